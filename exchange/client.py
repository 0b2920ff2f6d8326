"""Construct the ccxt client for Binance USDT-M futures or the paper exchange.

This module, ``exchange.gateway`` and ``exchange.stream`` (the user data stream) are
the only places that import ccxt.
"""

from __future__ import annotations

import ccxt
import ccxt.pro

RATE_LIMIT_MS = 10

# ccxt keys of the futures REST roots, with the path each one ends in.
FUTURES_API_ROOTS = {
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
}


def create_ccxt_client(
    *,
    api_key: str,
    api_secret: str,
    base_url: str | None = None,
    demo: bool = False,
    timeout_ms: int = 10_000,
) -> ccxt.binanceusdm:
    """Return a ``binanceusdm`` client; with ``base_url`` its futures API points there.

    ``base_url`` is how the paper exchange is reached: ccxt itself is unmodified, only the
    roots of the futures endpoints change, so signing, parsing and error mapping are live code.
    """
    client = ccxt.binanceusdm(
        {
            "apiKey": api_key,
            "secret": api_secret,
            "enableRateLimit": True,
            # ccxt's synchronous limiter spaces each request by rateLimit x its weight after the
            # previous one: at its default 50 ms an all-symbols open-orders query (weight 40)
            # waits 2 s, too slow for a 5 s guard. 10 ms keeps the spacing; the minute budget
            # itself is enforced by the gateway from Binance's X-MBX-USED-WEIGHT-1M header.
            "rateLimit": RATE_LIMIT_MS,
            "timeout": timeout_ms,
            "options": {
                "defaultType": "future",
                # The spot wallet's currency list is not needed for futures and would need sapi.
                "fetchCurrencies": False,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
            },
        }
    )
    if demo:
        client.enable_demo_trading(True)
    if base_url:
        root = base_url.rstrip("/")
        api = dict(client.urls["api"])
        for key, path in FUTURES_API_ROOTS.items():
            api[key] = root + path
        client.urls["api"] = api
    return client


def create_ccxt_stream_client(
    *,
    api_key: str,
    api_secret: str,
    base_url: str | None = None,
    stream_url: str | None = None,
    demo: bool = False,
    timeout_ms: int = 10_000,
) -> ccxt.pro.binanceusdm:
    """Return ccxt's WebSocket client for ``binanceusdm``; with ``base_url`` / ``stream_url``
    its futures REST roots (listen keys) and its WebSocket root point there, nothing else
    changes. No balance or positions snapshot is read on subscribing: the bot has its own."""
    options: dict[str, object] = {
        "defaultType": "future",
        "fetchCurrencies": False,
        "watchPositions": {"fetchPositionsSnapshot": False},
        "watchBalance": {"fetchBalanceSnapshot": False},
    }
    client = ccxt.pro.binanceusdm(
        {
            "apiKey": api_key,
            "secret": api_secret,
            "enableRateLimit": True,
            "rateLimit": RATE_LIMIT_MS,
            "timeout": timeout_ms,
            "options": options,
        }
    )
    if demo:
        client.enable_demo_trading(True)
    if base_url:
        root = base_url.rstrip("/")
        api = dict(client.urls["api"])
        for key, path in FUTURES_API_ROOTS.items():
            api[key] = root + path
        if stream_url:
            api["ws"] = {**api["ws"], "linear": stream_url.rstrip("/")}
        client.urls["api"] = api
    return client
