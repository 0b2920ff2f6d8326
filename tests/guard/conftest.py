"""Fixtures of the guard tests: positions opened by the order path on the paper exchange."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from risk.models import RiskProfile
from tests.monitoring.conftest import (  # noqa: F401 - shared fixtures
    celery_eager,
    celery_memory_broker,
    telegram,
)
from trading.gateway import exchange_gateway
from trading.guard import GuardReport, guard_pass
from trading.models import Position, Symbol
from trading.services import position_open


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


@pytest.fixture
def gateway(paper: object) -> ExchangeGateway:
    """A gateway on the paper exchange for the test's own actions (opening, cancelling)."""
    return fast_gateway()


@pytest.fixture
def guard(paper: object) -> Callable[[], GuardReport]:
    """Run one guard pass with a gateway of its own, as the Celery task does."""
    return lambda: guard_pass(gateway=fast_gateway())


@pytest.fixture
def market(paper: object, defaults: None) -> object:
    """BTCUSDT at 100000 and 1833.33 USDT: 0.011 BTC, TP 100500.0, SL 99700.0."""
    paper.set_price("BTCUSDT", "100000")
    paper.set_balance("USDT", "1833.33")
    return paper


@pytest.fixture
def btc(defaults: None) -> Symbol:
    return Symbol.objects.get(name="BTCUSDT")


def open_long(*, symbol: Symbol, gateway: ExchangeGateway) -> Position:
    """Open a protected LONG through the order path, as a trade cycle does."""
    outcome = position_open(symbol=symbol, side="LONG", reason="test", gateway=gateway)
    assert outcome.ok, outcome
    return outcome.position


def open_on_every_symbol(*, gateway: ExchangeGateway, count: int) -> list[Position]:
    """Open a LONG in ``count`` symbols (the paper exchange lists six), each one protected."""
    RiskProfile.objects.filter(is_active=True).update(
        max_open_positions=6, risk_pct=Decimal("5"), max_risk_usd=Decimal("100")
    )
    Symbol.objects.update(enabled=True)
    symbols = list(Symbol.objects.order_by("id"))[:count]
    assert len(symbols) == count, "the paper exchange has fewer symbols"
    return [open_long(symbol=symbol, gateway=gateway) for symbol in symbols]


def cancel_exit(*, position: Position, kind: str, gateway: ExchangeGateway) -> None:
    """Remove a position's stop-loss or take-profit by hand, directly on the exchange."""
    order = position.orders.get(purpose=kind)
    assert gateway.cancel_order(
        symbol=position.symbol.name, client_order_id=order.client_order_id, conditional=True
    )


def pass_weight(paper: object, run: Callable[[], GuardReport]) -> tuple[int, GuardReport]:
    """One guard pass and its weight as the exchange counted it (X-MBX-USED-WEIGHT-1M's
    minute): a pass that straddles the exchange's minute is run again."""
    for _ in range(3):
        minute = int(time.time() // 60)
        before = int(paper.stats()["weight_1m"])
        report = run()
        after = int(paper.stats()["weight_1m"])
        if int(time.time() // 60) == minute:
            return after - before, report
    raise AssertionError("three passes in a row straddled a minute")


def open_algo_orders(paper: object, symbol: str) -> list[dict]:
    return [o for o in paper.open_orders()["algo_orders"] if o["symbol"] == symbol]


def app_log_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    """What arena itself logged (not the paper exchange's or ccxt's own lines)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= level and r.name.split(".")[0] in ("trading", "monitoring", "risk")
    ]
