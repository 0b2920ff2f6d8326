"""Fixtures for the paper exchange tests: one server per session, a fresh exchange per test.

Everything goes through ccxt ``binanceusdm`` built by ``create_ccxt_client``; nothing is patched.
ccxt picks its Binance error table by host, so against a local URL several futures codes arrive
as plain ``ExchangeError``: assert on Binance's code with :func:`binance_code`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pytest

from exchange.client import create_ccxt_client
from paper.testing import PaperControl, PaperExchangeServer

BTC = "BTC/USDT:USDT"
BNB = "BNB/USDT:USDT"
DOGE = "DOGE/USDT:USDT"

FUNDING_MS = 8 * 3600 * 1000
_CODE = re.compile(r'"code"\s*:\s*"?(-?\d+)')


def binance_code(exc: BaseException) -> int | None:
    """Return Binance's error code from the JSON body quoted in a ccxt exception message."""
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


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


def make_client(server: PaperExchangeServer, **kwargs: object) -> ccxt.binanceusdm:
    """A ccxt client for the paper exchange; ccxt's own throttle off so tests run fast."""
    options = {"api_key": server.api_key, "api_secret": server.api_secret, **kwargs}
    client = create_ccxt_client(base_url=server.url, **options)  # type: ignore[arg-type]
    client.enableRateLimit = False
    return client


@pytest.fixture
def exchange(exchange_server: PaperExchangeServer, control: PaperControl) -> ccxt.binanceusdm:
    """A ccxt ``binanceusdm`` client with markets loaded, against a freshly reset exchange."""
    client = make_client(exchange_server)
    client.load_markets()
    return client


def position_amount(exchange: ccxt.binanceusdm, symbol: str) -> Decimal:
    """The signed position size of ``symbol`` as positionRisk reports it (0 when flat)."""
    for row in exchange.fetch_positions([symbol]):
        return Decimal(row["info"]["positionAmt"])
    return Decimal(0)


def usdt(exchange: ccxt.binanceusdm, field: str = "walletBalance") -> Decimal:
    """A USDT field of ``/fapi/v3/account``'s asset row, e.g. walletBalance."""
    balance = exchange.fetch_balance()
    row = next(a for a in balance["info"]["assets"] if a["asset"] == "USDT")
    return Decimal(row[field])
