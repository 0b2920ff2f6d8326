"""The guard's cost per pass with 1 and 30 open positions on the exchange (paper with synthetic
symbols beside the six real ones)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal

import pytest

from paper.testing import PaperControl, PaperExchangeServer
from risk.models import RiskProfile
from tests.support.exchange import fast_gateway, pass_cost
from tests.support.factories import open_long
from trading.guard import guard_pass
from trading.models import Symbol

pytestmark = pytest.mark.django_db(transaction=True)
POSITIONS = 30


@pytest.fixture
def thirty_symbols(defaults: None, settings: object) -> Iterator[PaperControl]:
    """A paper exchange of its own with 24 synthetic symbols, and their rows here."""
    server = PaperExchangeServer().start(port=0, feed="static", extra_symbols=POSITIONS - 6)
    settings.EXCHANGE, settings.PAPER_EXCHANGE_URL = "paper", server.url
    template = Symbol.objects.get(name="ADAUSDT")
    for n in range(1, POSITIONS - 6 + 1):
        clone = copy.copy(template)
        clone.pk = clone.id = None
        clone.name, clone.base_asset = f"SYN{n:03d}USDT", f"SYN{n:03d}"
        clone.save()
    Symbol.objects.update(enabled=True)
    # Thirty small positions that the account's margin holds at once.
    RiskProfile.objects.filter(is_active=True).update(
        max_open_positions=POSITIONS, risk_pct=Decimal("3"), max_risk_usd=Decimal("300")
    )
    try:
        yield PaperControl(server.url)
    finally:
        server.stop()


def _pass_cost(control: PaperControl) -> tuple[int, int, int]:
    guard_pass(gateway=fast_gateway())  # settles anything the openings left to do
    cost = pass_cost(control, lambda: guard_pass(gateway=fast_gateway()))
    assert cost.report.error == "" and cost.report.reattached == []
    return cost.requests, cost.weight, cost.queries


def test_guard_pass_when_1_or_30_positions_then_one_read_per_symbol_and_same_queries(
    thirty_symbols: PaperControl,
) -> None:
    # Arrange
    gateway = fast_gateway()
    symbols = list(Symbol.objects.order_by("id"))
    assert len(symbols) == POSITIONS
    open_long(symbol=symbols[0], gateway=gateway)
    requests_one, weight_one, queries_one = _pass_cost(thirty_symbols)

    # Act
    for symbol in symbols[1:]:
        open_long(symbol=symbol, gateway=gateway)
    requests_thirty, weight_thirty, queries_thirty = _pass_cost(thirty_symbols)

    # Assert: positions (5) and one conditional-order read (1) per watched symbol, since thirty
    # of them weigh less than one all-symbol read (40); the database side does not grow
    assert len(thirty_symbols.positions()) == POSITIONS
    assert (requests_one, requests_thirty) == (1 + 1, 1 + POSITIONS)
    assert (weight_one, weight_thirty) == (5 + 1, 5 + POSITIONS)
    assert queries_one == queries_thirty
