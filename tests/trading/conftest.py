"""Fixtures of the order-path tests: a gateway on the paper exchange that never really sleeps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from trading.gateway import exchange_gateway
from trading.models import Symbol


class SleepRecorder:
    """Stands in for time.sleep: remembers how long the policy wanted to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def gateway(paper: object, sleeps: SleepRecorder) -> ExchangeGateway:
    """The configured gateway (paper), its retry waits recorded instead of slept."""
    return exchange_gateway(retry_policy=RetryPolicy(max_total_seconds=30, sleep=sleeps))


@pytest.fixture
def market(paper: object, defaults: None) -> object:
    """BTCUSDT at 100000, BNBUSDT at 964 and 1833.33 USDT: the scenario of the default rules.

    30 % of 1833.33 is a margin budget of 550.00 USDT: 0.011 BTC and 1.14 BNB at 2x.
    """
    paper.set_price("BTCUSDT", "100000")
    paper.set_price("BNBUSDT", "964")
    paper.set_balance("USDT", "1833.33")
    return paper


@pytest.fixture
def btc(defaults: None) -> Symbol:
    return Symbol.objects.get(name="BTCUSDT")


@pytest.fixture
def bnb(defaults: None) -> Symbol:
    return Symbol.objects.get(name="BNBUSDT")


def exchange_quantity(paper: object, symbol: str) -> Decimal:
    """The signed position quantity the paper exchange holds (0 when flat)."""
    for row in paper.positions():
        if row["symbol"] == symbol:
            return Decimal(row["positionAmt"])
    return Decimal(0)


def exchange_exits(paper: object, symbol: str) -> dict[str, Decimal]:
    """The open conditional orders of ``symbol`` on the exchange: {order type: trigger price}."""
    return {
        o["orderType"]: Decimal(o["triggerPrice"])
        for o in paper.open_orders()["algo_orders"]
        if o["symbol"] == symbol
    }


@pytest.fixture
def expect_precision_rejection() -> None:
    """Request this in the one test that provokes -1111 on purpose (the retry-policy test)."""


@pytest.fixture(autouse=True)
def _no_precision_rejections(request: pytest.FixtureRequest):
    """Every test that talks to the paper exchange ends with zero -1111 rejections there.

    The old bot's signature failure was "Precision is over the maximum" on every partial close;
    the order path rounds through one module, so the exchange must never see it.
    """
    watched = (
        "paper" in request.fixturenames and "expect_precision_rejection" not in request.fixturenames
    )
    # Taken now: autouse fixtures are torn down after the test's own fixtures.
    paper = request.getfixturevalue("paper") if watched else None
    yield
    if paper is None:
        return
    rejections = paper.stats()["rejections"]
    assert "-1111" not in rejections, f"the paper exchange rejected -1111: {rejections}"
