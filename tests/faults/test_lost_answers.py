"""An answer lost after the exchange accepted the order: entries, stops and closes.

The paper exchange handles the request and then holds the answer back past the client's timeout
(``timeout``) or closes the connection without one (``drop``). Whatever the bot does next, the
exchange must end up with exactly one entry, one stop-loss, one take-profit and one close: counted
by the exchange itself (``orders_accepted``), not by our database.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from exchange.gateway import ExchangeGateway
from signals.cycles import trade_cycle_run
from signals.types import Decision
from tests.support.exchange import (
    HELD_SECONDS,
    PROTECTED,
    accepted,
    exchange_exit_types,
    exchange_quantity,
    exchange_regular_orders,
)
from tests.support.factories import backdate
from trading.guard import guard_pass
from trading.models import Order, Position, Symbol
from trading.services import CloseOutcome, OpenOutcome, position_close, position_open

pytestmark = pytest.mark.django_db(transaction=True)

LOST = pytest.mark.parametrize("kind", ["timeout", "drop"])
ORDER = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"


def lose_next_answer(paper: Any, *, path: str, kind: str) -> None:
    """The next POST to ``path`` is handled by the exchange, and its answer never arrives."""
    paper.faults(kind=kind, method="POST", path=path, count=1, seconds=HELD_SECONDS)


def fail_lookups(paper: Any, *, path: str) -> None:
    """Every lookup of an order by id answers 503 until the faults are cleared."""
    paper.faults(kind="error", method="GET", path=path, count=1000, status=503)


def open_long(symbol: Symbol, gateway: ExchangeGateway) -> Position:
    outcome = position_open(symbol=symbol, side="LONG", reason="test", gateway=gateway)
    assert outcome.ok, outcome
    return outcome.position


# --- entries --------------------------------------------------------------------------------------
@LOST
def test_open_when_entry_answer_lost_then_one_entry_on_exchange_and_position_protected(
    btc_market: Any, btc: Symbol, patient_gateway: ExchangeGateway, kind: str
) -> None:
    lose_next_answer(btc_market, path=ORDER, kind=kind)

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=patient_gateway)

    assert outcome.status == OpenOutcome.OPENED, outcome
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 3  # entry, stop-loss, take-profit: nothing sent twice
    assert btc_market.stats()["requests"].get(f"POST {ORDER}") == 1


@LOST
def test_cycle_when_entry_answer_lost_past_budget_then_next_cycle_protects_it_no_second_entry(
    btc_market: Any, btc: Symbol, impatient_gateway: ExchangeGateway, kind: str
) -> None:
    lose_next_answer(btc_market, path=ORDER, kind=kind)
    fail_lookups(btc_market, path=ORDER)
    first = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="t"), gateway=impatient_gateway
    )
    btc_market.clear_faults()

    second = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="t"), gateway=impatient_gateway
    )

    assert first.status == OpenOutcome.FAILED, first
    assert "outcome unknown" in first.reason, first
    assert second.status != OpenOutcome.OPENED, second
    # The second cycle settled the first entry from the exchange before deciding: found by its
    # client id, recorded and protected; no second entry was sent.
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 3
    assert Position.objects.get(status__in=Position.OPEN_STATUSES).status == Position.Status.OPEN


@LOST
def test_guard_when_entry_answer_was_lost_then_position_gets_one_stop_and_one_target(
    btc_market: Any,
    btc: Symbol,
    impatient_gateway: ExchangeGateway,
    patient_gateway: ExchangeGateway,
    kind: str,
) -> None:
    lose_next_answer(btc_market, path=ORDER, kind=kind)
    fail_lookups(btc_market, path=ORDER)
    position_open(symbol=btc, side="LONG", reason="test", gateway=impatient_gateway)
    btc_market.clear_faults()
    position = Position.objects.get()
    backdate(position, seconds=120)

    guard_pass(gateway=patient_gateway)
    backdate(position, seconds=120)
    guard_pass(gateway=patient_gateway)

    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 3


# --- stops ----------------------------------------------------------------------------------------
@LOST
def test_open_when_exit_answers_lost_then_exactly_one_stop_and_one_target(
    btc_market: Any, btc: Symbol, patient_gateway: ExchangeGateway, kind: str
) -> None:
    # Both exits go out concurrently; both answers are lost.
    btc_market.faults(kind=kind, method="POST", path=ALGO, count=2, seconds=HELD_SECONDS)

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=patient_gateway)

    assert outcome.status == OpenOutcome.OPENED, outcome
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 3
    statuses = set(Order.objects.filter(purpose__in=["SL", "TP"]).values_list("status", flat=True))
    assert statuses == {Order.Status.OPEN}


@LOST
def test_guard_when_reattach_answer_lost_then_exactly_one_stop_after_later_passes(
    btc_market: Any, btc: Symbol, patient_gateway: ExchangeGateway, kind: str
) -> None:
    position = open_long(btc, patient_gateway)
    stop = position.orders.get(purpose="SL")
    assert patient_gateway.cancel_order(
        symbol="BTCUSDT", client_order_id=stop.client_order_id, conditional=True
    )
    lose_next_answer(btc_market, path=ALGO, kind=kind)

    first = guard_pass(gateway=patient_gateway)
    backdate(position, seconds=120)
    guard_pass(gateway=patient_gateway)

    assert first.reattached, first.summary()
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 4  # entry, SL, TP, the one re-attached SL


@LOST
def test_guard_when_reattach_answer_lost_past_retry_budget_then_next_pass_finds_it_not_resends(
    btc_market: Any,
    btc: Symbol,
    patient_gateway: ExchangeGateway,
    impatient_gateway: ExchangeGateway,
    kind: str,
) -> None:
    position = open_long(btc, patient_gateway)
    stop = position.orders.get(purpose="SL")
    patient_gateway.cancel_order(
        symbol="BTCUSDT", client_order_id=stop.client_order_id, conditional=True
    )
    lose_next_answer(btc_market, path=ALGO, kind=kind)
    fail_lookups(btc_market, path=ALGO)
    guard_pass(gateway=impatient_gateway)
    btc_market.clear_faults()

    backdate(position, seconds=120)
    guard_pass(gateway=patient_gateway)
    backdate(position, seconds=120)
    guard_pass(gateway=patient_gateway)

    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 4


# --- closes ---------------------------------------------------------------------------------------
@LOST
def test_close_when_answer_lost_then_one_close_and_position_flat_without_exits(
    btc_market: Any, btc: Symbol, patient_gateway: ExchangeGateway, kind: str
) -> None:
    position = open_long(btc, patient_gateway)
    lose_next_answer(btc_market, path=ORDER, kind=kind)

    outcome = position_close(position=position, reason="MANUAL", gateway=patient_gateway)

    assert outcome.status == CloseOutcome.CLOSED, outcome
    assert exchange_quantity(btc_market, "BTCUSDT") == 0
    assert exchange_exit_types(btc_market, "BTCUSDT") == []
    assert exchange_regular_orders(btc_market, "BTCUSDT") == []
    assert accepted(btc_market) == 4  # entry, SL, TP, one close


@LOST
def test_close_when_answer_lost_past_retry_budget_then_no_second_close_and_guard_records_it(
    btc_market: Any,
    btc: Symbol,
    patient_gateway: ExchangeGateway,
    impatient_gateway: ExchangeGateway,
    kind: str,
) -> None:
    position = open_long(btc, patient_gateway)
    lose_next_answer(btc_market, path=ORDER, kind=kind)
    fail_lookups(btc_market, path=ORDER)
    first = position_close(position=position, reason="MANUAL", gateway=impatient_gateway)
    btc_market.clear_faults()

    again = position_close(position=position, reason="MANUAL", gateway=patient_gateway)
    backdate(position, seconds=120)
    guard_pass(gateway=patient_gateway)

    assert first.status == CloseOutcome.FAILED, first
    assert again.status != CloseOutcome.PARTIAL, again
    assert accepted(btc_market) == 4
    assert exchange_quantity(btc_market, "BTCUSDT") == 0
    assert exchange_exit_types(btc_market, "BTCUSDT") == []
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED
