"""Fixtures of the operator tests: two symbols priced, a funded account, positions opened through
the order path on the paper exchange."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.factories import open_position_by_name
from trading.models import Position


@pytest.fixture
def funded_market(paper: object, defaults: None) -> object:
    """BTCUSDT at 100000, BNBUSDT at 964, 10000 USDT: room for two positions at 2x, 30 %."""
    paper.set_price("BTCUSDT", "100000")
    paper.set_price("BNBUSDT", "964")
    paper.set_balance("USDT", "10000")
    return paper


@pytest.fixture
def open_position(transactional_db: None, funded_market: object) -> Callable[[str, str], Position]:
    """Open a protected position through ``position_open``, as a trade cycle would.

    Transactional: the order path places the two exits from threads, which must see its rows.
    """
    return open_position_by_name
