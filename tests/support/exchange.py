"""Gateways on the paper exchange for tests, and what the paper exchange holds, read through its
control API (the exchange's side of an assertion)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from paper.testing import PaperControl
from trading.gateway import exchange_gateway
from trading.guard import GuardReport
from trading.models import Position

# The two exits of a protected position, as exchange_exit_types lists them.
PROTECTED = ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
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


# --- gateways -------------------------------------------------------------------------------------
def fast_gateway() -> ExchangeGateway:
    """A gateway on the paper exchange without ccxt's client-side throttle.

    ccxt spaces requests by Binance's weights (an all-symbols open-orders query costs 40, so it
    waits 2 s); the paper exchange counts weight itself, and tests need not wait.
    """
    gateway = exchange_gateway(
        retry_policy=RetryPolicy(max_total_seconds=5, sleep=lambda seconds: None)
    )
    gateway.client.enableRateLimit = False
    return gateway


def make_gateway(*, sleep: Callable[[float], None], budget: float = 30.0) -> ExchangeGateway:
    """A gateway on the configured (paper) exchange; retry waits go to ``sleep``."""
    gateway = exchange_gateway(retry_policy=RetryPolicy(max_total_seconds=budget, sleep=sleep))
    gateway.client.enableRateLimit = False
    return gateway


def cancel_exit(*, position: Position, kind: str, gateway: ExchangeGateway) -> None:
    """Remove a position's stop-loss or take-profit by hand, directly on the exchange."""
    order = position.orders.get(purpose=kind)
    assert gateway.cancel_order(
        symbol=position.symbol.name, client_order_id=order.client_order_id, conditional=True
    )


# --- what the exchange holds ----------------------------------------------------------------------
def exchange_quantity(paper: PaperControl, symbol: str) -> Decimal:
    """The signed position quantity the paper exchange holds (0 when flat)."""
    for row in paper.positions():
        if row["symbol"] == symbol:
            return Decimal(row["positionAmt"])
    return Decimal(0)


def exchange_order_count(paper: PaperControl) -> int:
    """Open regular and conditional orders on the exchange, hidden ones included."""
    orders = paper.open_orders()
    return len(orders["orders"]) + len(orders["algo_orders"])


def exchange_exit_types(paper: PaperControl, symbol: str) -> list[str]:
    """The order types of the open conditional orders of ``symbol``, sorted (duplicates kept)."""
    return sorted(
        o["orderType"] for o in paper.open_orders()["algo_orders"] if o["symbol"] == symbol
    )


def exchange_exits(paper: PaperControl, symbol: str) -> dict[str, Decimal]:
    """The open conditional orders of ``symbol`` on the exchange: {order type: trigger price}."""
    return {
        o["orderType"]: Decimal(o["triggerPrice"])
        for o in paper.open_orders()["algo_orders"]
        if o["symbol"] == symbol
    }


def exchange_regular_orders(paper: PaperControl, symbol: str) -> list[dict[str, Any]]:
    """The open regular (non-conditional) orders of ``symbol`` on the exchange."""
    return [o for o in paper.open_orders()["orders"] if o["symbol"] == symbol]


def open_algo_orders(paper: PaperControl, symbol: str) -> list[dict]:
    """The open conditional orders of ``symbol`` on the exchange, as the control API lists them."""
    return [o for o in paper.open_orders()["algo_orders"] if o["symbol"] == symbol]


def accepted(paper: PaperControl) -> int:
    """Orders (regular and conditional) the paper exchange has accepted since its reset."""
    return int(paper.stats()["orders_accepted"])


def no_precision_rejections(request: pytest.FixtureRequest) -> Iterator[None]:
    """The body of an autouse fixture: a test that talks to the paper exchange ends with zero
    -1111 rejections there, unless it requests ``expect_precision_rejection``.

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


def no_filter_rejections(request: pytest.FixtureRequest) -> Iterator[None]:
    """The body of an autouse fixture: a test ends with no precision or size rejection on the
    paper exchange (when it used one)."""
    paper = request.getfixturevalue("paper") if "paper" in request.fixturenames else None
    yield
    if paper is None:
        return
    rejections = paper.stats()["rejections"]
    found = {code: n for code, n in rejections.items() if code in FILTER_REJECTIONS}
    assert not found, f"the paper exchange rejected for precision or size: {rejections}"


@dataclass(frozen=True)
class PassCost:
    """One guard pass as the exchange and the database saw it."""

    weight: int  # X-MBX-USED-WEIGHT-1M's growth over the pass
    requests: int  # requests the paper exchange received
    queries: int  # queries the pass sent to the database
    report: GuardReport


def pass_cost(paper: Any, run: Callable[[], GuardReport]) -> PassCost:
    """One guard pass and its cost, all counted over the same attempt: a pass that straddles the
    exchange's minute (its weight would be split) is run again and only the last one counts."""
    for _ in range(3):
        minute = int(time.time() // 60)
        weight_before = int(paper.stats()["weight_1m"])
        requests_before = sum(paper.stats()["requests"].values())
        with CaptureQueriesContext(connection) as queries:
            report = run()
        requests = sum(paper.stats()["requests"].values()) - requests_before
        weight = int(paper.stats()["weight_1m"]) - weight_before
        if int(time.time() // 60) == minute:
            return PassCost(weight, requests, len(queries), report)
    raise AssertionError("three passes in a row straddled a minute")


def pass_weight(paper: Any, run: Callable[[], GuardReport]) -> tuple[int, GuardReport]:
    """One guard pass and its weight as the exchange counted it (see ``pass_cost``)."""
    cost = pass_cost(paper, run)
    return cost.weight, cost.report
