"""The paper exchange seen through ccxt, as the tests of ``paper/`` use it.

ccxt picks its Binance error table by host, so against a local URL several futures codes arrive
as plain ``ExchangeError``: assert on Binance's code with :func:`binance_code`.
"""

from __future__ import annotations

import re
from decimal import Decimal

import ccxt

from exchange.client import create_ccxt_client
from paper.testing import PaperExchangeServer

BTC = "BTC/USDT:USDT"
BNB = "BNB/USDT:USDT"
DOGE = "DOGE/USDT:USDT"

FUNDING_MS = 8 * 3600 * 1000
_CODE = re.compile(r'"code"\s*:\s*"?(-?\d+)')


def binance_code(exc: BaseException) -> int | None:
    """Return Binance's error code from the JSON body quoted in a ccxt exception message."""
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def make_client(server: PaperExchangeServer, **kwargs: object) -> ccxt.binanceusdm:
    """A ccxt client for the paper exchange; ccxt's own throttle off so tests run fast."""
    options = {"api_key": server.api_key, "api_secret": server.api_secret, **kwargs}
    client = create_ccxt_client(base_url=server.url, **options)  # type: ignore[arg-type]
    client.enableRateLimit = False
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
