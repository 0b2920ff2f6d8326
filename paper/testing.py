"""The paper exchange for tests: an in-process server and a small control client.

Usage::

    from paper.testing import PaperControl, PaperExchangeServer

    with PaperExchangeServer(prices={"BTCUSDT": "100000"}) as server:
        client = create_ccxt_client(
            api_key=server.api_key, api_secret=server.api_secret, base_url=server.url
        )
        control = PaperControl(server.url)
        control.set_price("BTCUSDT", "95000")

``PaperExchangeServer(...)`` takes the arguments of :meth:`PaperExchangeServer.start`; as a context
manager it starts on enter and stops on exit. Both classes are a stable interface for every
engineer's tests: keep them backwards compatible.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from paper import options as paper_options
from paper.runtime import PaperExchange, api_credentials
from paper.symbols import extra_symbols as current_extra_symbols
from paper.symbols import set_extra_symbols


def extra_symbols_from_env() -> int:
    """``PAPER_EXTRA_SYMBOLS`` as a count of synthetic symbols (0 when unset)."""
    return int(os.environ.get("PAPER_EXTRA_SYMBOLS") or 0)


class PaperExchangeServer:
    """A paper exchange served from a background thread of this process."""

    def __init__(self, **start_kwargs: Any) -> None:
        self._start_kwargs = start_kwargs
        self.exchange: PaperExchange | None = None
        self._previous_extra: int | None = None
        self.api_key, self.api_secret = api_credentials()

    def start(
        self,
        port: int = 0,
        feed: str = "static",
        speed: float = 1.0,
        state_file: Path | str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        prices: dict[str, str | Decimal] | None = None,
        host: str = "127.0.0.1",
        extra_symbols: int | None = None,
        stream_port: int = 0,
        options: dict[str, str] | None = None,
    ) -> PaperExchangeServer:
        """Start serving; ``port=0`` picks a free port. Returns ``self``.

        ``feed``: "static" (prices move only through the control API) or "replay" (bundled
        candles at ``speed`` x real time). ``state_file``: JSON file restored at start and kept
        up to date. ``api_key``/``api_secret`` default to ``PAPER_API_KEY``/``PAPER_API_SECRET``
        or ``arena-paper-key``/``arena-paper-secret``. ``prices``: start prices per symbol.
        ``extra_symbols``: how many synthetic symbols (``SYN001USDT``..., clones of ADAUSDT's
        filters, brackets and candles; see :mod:`paper.symbols`) to list besides the six real
        ones; ``None`` reads ``PAPER_EXTRA_SYMBOLS`` (default 0). The symbol list is one per
        process: the last exchange started sets it, and :meth:`stop` puts back the one before.
        ``stream_port``: the user data stream's port (0: a free one; see :attr:`stream_url`).
        ``options``: :mod:`paper.options` settings over those of ``PAPER_OPTIONS``; a reset
        returns to them.
        """
        self._previous_extra = current_extra_symbols()
        set_extra_symbols(extra_symbols_from_env() if extra_symbols is None else extra_symbols)
        self.api_key = api_key or self.api_key
        self.api_secret = api_secret or self.api_secret
        self.exchange = PaperExchange(
            host=host,
            port=port,
            feed=feed,
            speed=speed,
            state_file=state_file,
            api_key=self.api_key,
            api_secret=self.api_secret,
            prices=prices,
            stream_port=stream_port,
            options=paper_options.from_env().updated(options or {}),
        ).start()
        return self

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; pass it to ``create_ccxt_client``."""
        if self.exchange is None:
            raise RuntimeError("the paper exchange is not started")
        return self.exchange.url

    @property
    def stream_url(self) -> str:
        """The user data stream's base URL, ``ws://127.0.0.1:<port>/ws`` (ccxt's
        ``urls['api']['ws']['linear']``)."""
        if self.exchange is None:
            raise RuntimeError("the paper exchange is not started")
        return self.exchange.stream_url

    def stop(self) -> None:
        """Stop serving and write the state file, if any."""
        if self.exchange is not None:
            self.exchange.stop()
            self.exchange = None
        if self._previous_extra is not None:
            set_extra_symbols(self._previous_extra)
            self._previous_extra = None

    def __enter__(self) -> PaperExchangeServer:
        return self.start(**self._start_kwargs)

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PaperControlError(Exception):
    """The control API refused a request."""


class PaperControl:
    """Client of the control API (``/paper/v1/``) over plain HTTP."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/paper/v1/{name}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            raise PaperControlError(f"{method} {name}: {e.code} {e.read().decode()}") from e

    def set_price(
        self,
        symbol: str,
        price: str | Decimal | float,
        mark_price: str | Decimal | float | None = None,
    ) -> None:
        """Jump last and mark price of ``symbol`` to ``price``; orders that cross fill.

        ``mark_price`` sets the mark price apart from the last price (for MARK_PRICE stops).
        """
        body = {"symbol": symbol, "price": str(price)}
        if mark_price is not None:
            body["mark_price"] = str(mark_price)
        self._call("POST", "price", body)

    def set_balance(self, asset: str, amount: str | Decimal | float) -> None:
        """Set the wallet balance of ``asset`` (USDT)."""
        self._call("POST", "balance", {"asset": asset, "amount": str(amount)})

    def reset(self) -> None:
        """Back to start: no orders or positions, 10000 USDT, start prices, no faults."""
        self._call("POST", "reset", {})

    def stats(self) -> dict[str, Any]:
        """Request counts per endpoint, weight used this minute, orders accepted, rejections."""
        return self._call("GET", "stats")

    def faults(self, **spec: Any) -> None:
        """Inject one fault, e.g. ``faults(kind="drop", method="POST", path="/fapi/v1/order")``.

        Kinds and fields are documented in :mod:`paper.faults`; ``kind="algo_hidden",
        seconds=30`` hides new algo orders from open-order queries.
        """
        self._call("POST", "faults", spec)

    def clear_faults(self) -> None:
        """Remove pending faults and reveal algo orders hidden by ``algo_hidden``."""
        self._call("DELETE", "faults")

    def configure(self, **settings: Any) -> None:
        """Change weight_limit_1m, orders_10s, orders_1m, ban_after, ban_seconds or slippage."""
        self._call("POST", "config", settings)

    def set_options(self, **options: str | int | Decimal) -> dict[str, str]:
        """Change options of :mod:`paper.options` until the next reset; returns them all."""
        return self._call("POST", "options", {k: str(v) for k, v in options.items()})

    def set_funding_rate(self, symbol: str, rate: str | Decimal) -> None:
        """Publish ``rate`` as ``symbol``'s funding rate for the next settlements."""
        self._call("POST", "funding", {"symbol": symbol, "rate": str(rate)})

    def advance(self, seconds: float | int) -> int:
        """Move exchange time forward by ``seconds``; returns the new exchange time in ms."""
        return int(self._call("POST", "advance", {"seconds": str(seconds)})["time"])

    def positions(self) -> list[dict[str, Any]]:
        """Non-flat positions as positionRisk v2 rows."""
        return self._call("GET", "positions")

    def stream(self, **settings: Any) -> dict[str, Any]:
        """The user data stream: faults and settings, then its status.

        ``action="drop"`` closes every connection at once, ``action="expire"`` expires the
        listen key now; ``lose=n`` loses the next n events, ``delay_seconds`` delays each event,
        ``listen_key_validity_seconds`` and ``max_connection_seconds`` replace 60 min and 24 h.
        """
        return self._call("POST", "stream", settings)

    def open_orders(self) -> dict[str, list[dict[str, Any]]]:
        """``{"orders": [...], "algo_orders": [...]}``, including algo orders still hidden."""
        return self._call("GET", "open_orders")
