"""Fixtures for the paper exchange tests: one server per session, a fresh exchange per test.

Everything goes through ccxt ``binanceusdm`` built by ``create_ccxt_client``; nothing is patched.
The helpers (``binance_code``, ``position_amount``, ``usdt``, the symbols) are in
``tests.support.paper``.
"""

from __future__ import annotations

from collections.abc import Iterator

import ccxt
import pytest

from paper.testing import PaperControl, PaperExchangeServer
from tests.support.paper import FUNDING_MS, make_client


@pytest.fixture(scope="session")
def exchange_server() -> Iterator[PaperExchangeServer]:
    """One paper exchange for the session: static feed, free port, default key pair."""
    server = PaperExchangeServer().start(port=0, feed="static")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def control(exchange_server: PaperExchangeServer) -> PaperControl:
    """The control API, after a reset: 10000 USDT, no orders, start prices, no faults."""
    control = PaperControl(exchange_server.url)
    control.reset()
    _away_from_funding_time(control)
    return control


def _away_from_funding_time(control: PaperControl) -> None:
    """Exchange time past the next funding time when it is near, so no test crosses one by
    the clock alone (funding falls due every 8 hours of exchange time, wall clock included)."""
    now = control.advance(0)
    until_next = FUNDING_MS - now % FUNDING_MS
    if until_next < 3_600_000:
        control.advance(until_next // 1000 + 1)


@pytest.fixture
def exchange(exchange_server: PaperExchangeServer, control: PaperControl) -> ccxt.binanceusdm:
    """A ccxt ``binanceusdm`` client with markets loaded, against a freshly reset exchange."""
    client = make_client(exchange_server)
    client.load_markets()
    return client
