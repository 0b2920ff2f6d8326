"""Fixtures of the operator tests: two symbols priced, a funded account, positions opened through
the order path on the paper exchange."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from trading.models import Position, Symbol
from trading.services import position_open


@pytest.fixture
def market(paper: object, defaults: None) -> object:
    """BTCUSDT at 100000, BNBUSDT at 964, 10000 USDT: room for two positions at 2x, 30 %."""
    paper.set_price("BTCUSDT", "100000")
    paper.set_price("BNBUSDT", "964")
    paper.set_balance("USDT", "10000")
    return paper


@pytest.fixture
def open_position(transactional_db: None, market: object) -> Callable[[str, str], Position]:
    """Open a protected position through ``position_open``, as a trade cycle would.

    Transactional: the order path places the two exits from threads, which must see its rows.
    """

    def _open(symbol: str, side: str) -> Position:
        outcome = position_open(
            symbol=Symbol.objects.get(name=symbol), side=side, reason="test entry"
        )
        assert outcome.ok, outcome
        return outcome.position

    return _open


def exchange_quantity(paper: object, symbol: str) -> Decimal:
    """The signed position quantity the paper exchange holds (0 when flat)."""
    for row in paper.positions():
        if row["symbol"] == symbol:
            return Decimal(row["positionAmt"])
    return Decimal(0)


def exchange_order_count(paper: object) -> int:
    """Open regular and conditional orders on the exchange, hidden ones included."""
    orders = paper.open_orders()
    return len(orders["orders"]) + len(orders["algo_orders"])
