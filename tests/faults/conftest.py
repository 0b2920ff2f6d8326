"""Fixtures of the fault-injection tests: the order path against a paper exchange that misbehaves.

The gateway here has a 1 s client timeout (so a held-back answer is given up on quickly) and a
retry policy whose waits are recorded instead of slept; ccxt's own throttle is off because the
paper exchange counts weight itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from trading.gateway import exchange_gateway
from trading.models import Position, Symbol

# Codes the old bot lived with and this one must never cause: precision, lot size, notional.
FILTER_REJECTIONS = ("-1111", "-4164", "-4005", "-4003")
CLIENT_TIMEOUT_SECONDS = 1.0
# How long the paper exchange holds an answer back: well past the client's timeout.
HELD_SECONDS = 2.5


class SleepRecorder:
    """Stands in for ``time.sleep`` in the retry policy: remembers each wait, waits for none."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def short_timeout(settings: Any) -> None:
    settings.EXCHANGE_TIMEOUT_SECONDS = CLIENT_TIMEOUT_SECONDS


def make_gateway(*, sleep: Callable[[float], None], budget: float = 30.0) -> ExchangeGateway:
    """A gateway on the configured (paper) exchange; retry waits go to ``sleep``."""
    gateway = exchange_gateway(retry_policy=RetryPolicy(max_total_seconds=budget, sleep=sleep))
    gateway.client.enableRateLimit = False
    return gateway


@pytest.fixture
def gateway(paper: Any, short_timeout: None, sleeps: SleepRecorder) -> ExchangeGateway:
    """The order path's gateway: generous retry budget, waits recorded."""
    return make_gateway(sleep=sleeps)


@pytest.fixture
def impatient_gateway(paper: Any, short_timeout: None, sleeps: SleepRecorder) -> ExchangeGateway:
    """A gateway whose retry budget runs out within a few seconds: the answer stays lost."""
    return make_gateway(sleep=sleeps, budget=2.0)


@pytest.fixture
def market(paper: Any, defaults: None) -> Any:
    """BTCUSDT at 100000 and 1833.33 USDT: a LONG of 0.011 BTC, TP 100500, SL 99700."""
    paper.set_price("BTCUSDT", "100000")
    paper.set_balance("USDT", "1833.33")
    return paper


@pytest.fixture
def btc(defaults: None) -> Symbol:
    return Symbol.objects.get(name="BTCUSDT")


@pytest.fixture(autouse=True)
def _no_filter_rejections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every fault test ends with no precision or size rejection on the exchange."""
    paper = request.getfixturevalue("paper") if "paper" in request.fixturenames else None
    yield
    if paper is None:
        return
    rejections = paper.stats()["rejections"]
    found = {code: n for code, n in rejections.items() if code in FILTER_REJECTIONS}
    assert not found, f"the paper exchange rejected for precision or size: {rejections}"


# --- what the exchange holds ----------------------------------------------------------------------
def exchange_quantity(paper: Any, symbol: str) -> Decimal:
    """The signed position quantity on the paper exchange (0 when flat)."""
    for row in paper.positions():
        if row["symbol"] == symbol:
            return Decimal(row["positionAmt"])
    return Decimal(0)


def exchange_exit_types(paper: Any, symbol: str) -> list[str]:
    """The order types of the open conditional orders of ``symbol``, sorted (duplicates kept)."""
    return sorted(
        o["orderType"] for o in paper.open_orders()["algo_orders"] if o["symbol"] == symbol
    )


def exchange_regular_orders(paper: Any, symbol: str) -> list[dict[str, Any]]:
    return [o for o in paper.open_orders()["orders"] if o["symbol"] == symbol]


def accepted(paper: Any) -> int:
    """Orders (regular and conditional) the paper exchange has accepted since its reset."""
    return int(paper.stats()["orders_accepted"])


PROTECTED = ["STOP_MARKET", "TAKE_PROFIT_MARKET"]


def backdate(position: Position, *, seconds: float) -> None:
    """Make ``position`` and its orders look ``seconds`` older: the guard's debounce and the
    reconcile grace period have passed, without the test waiting for them."""
    from datetime import timedelta

    from trading.models import Order, ProtectionState

    delta = timedelta(seconds=seconds)
    Position.objects.filter(pk=position.pk).update(opened_at=position.opened_at - delta)
    for order in Order.objects.filter(position=position):
        Order.objects.filter(pk=order.pk).update(
            created_at=order.created_at - delta, updated_at=order.updated_at - delta
        )
    for state in ProtectionState.objects.filter(next_attempt_at__isnull=False):
        ProtectionState.objects.filter(pk=state.pk).update(
            next_attempt_at=state.next_attempt_at - delta
        )
