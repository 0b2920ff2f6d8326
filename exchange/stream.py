"""The user data stream's door to the exchange: ccxt's WebSocket client for ``binanceusdm``.

Like ``exchange.gateway`` for REST, this is where ccxt's stream is called and its errors become
ours. One :class:`UserDataStream` is one connection's life: ``open`` creates (or extends) the
listen key and connects; ``next_events`` waits for the next fills and algo updates; any error
means the connection is gone, and the caller builds a new stream after a REST reconcile of the gap.
ccxt keeps the listen key alive itself (PUT every ``listenKeyRefreshRate``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt.pro
from django.conf import settings

from core.errors import TemporaryError
from exchange.client import create_ccxt_stream_client
from exchange.gateway import Fill, _bool, _dec, _time

logger = logging.getLogger(__name__)


# Binance: a key lives 60 minutes after its last keep-alive; it recommends one every 30.
KEEP_ALIVE_SECONDS = 20 * 60


class StreamLost(TemporaryError):
    """The user data stream is down (closed, dropped, key expired or refused): the stream
    process reconciles the gap over REST and connects again, with backoff."""


@dataclass(frozen=True)
class StreamFill:
    """One fill as ORDER_TRADE_UPDATE reports it, with the order it belongs to."""

    fill: Fill
    client_order_id: str
    order_status: str  # the order's status after this fill: PARTIALLY_FILLED or FILLED
    order_type: str  # the original type: MARKET, LIMIT, STOP_MARKET, LIQUIDATION, ...
    reduce_only: bool
    event_time: datetime  # the exchange's transaction time of the fill
    close_position: bool = False
    # The order's cumulative filled quantity and average price after this fill (None: unknown).
    order_filled_quantity: Decimal | None = None
    order_average_price: Decimal | None = None

    @property
    def symbol(self) -> str:
        return self.fill.symbol


@dataclass(frozen=True)
class StreamAlgo:
    """One ALGO_UPDATE: what became of a conditional order (stop-loss, take-profit)."""

    symbol: str
    client_algo_id: str
    algo_id: str
    status: str  # NEW, TRIGGERING, TRIGGERED, FINISHED, CANCELED, EXPIRED, REJECTED
    actual_order_id: str  # the regular order it became once triggered ("" before)
    event_time: datetime


StreamEvent = StreamFill | StreamAlgo


def stream_fill_parse(raw: dict[str, Any]) -> StreamFill:
    """Parse the ``o`` object of an ORDER_TRADE_UPDATE whose execution type is TRADE."""
    fill = Fill(
        symbol=raw["s"],
        order_id=str(raw["i"]),
        side=raw["S"],
        price=_dec(raw["L"]),
        quantity=_dec(raw["l"]),
        realized_pnl=_dec(raw.get("rp") or "0"),
        commission=_dec(raw.get("n") or "0"),
        time=_time(raw["T"]),
        trade_id=int(raw["t"]),
        commission_asset=raw.get("N") or "USDT",
        maker=_bool(raw.get("m")),
    )
    return StreamFill(
        fill=fill,
        client_order_id=str(raw.get("c") or ""),
        order_status=str(raw.get("X") or ""),
        order_type=str(raw.get("ot") or raw.get("o") or ""),
        reduce_only=_bool(raw.get("R")),
        event_time=fill.time,
        close_position=_bool(raw.get("cp")),
        order_filled_quantity=_dec(raw["z"]) if raw.get("z") is not None else None,
        order_average_price=_dec(raw["ap"]) if raw.get("ap") is not None else None,
    )


def stream_algo_parse(raw: dict[str, Any]) -> StreamAlgo:
    """Parse the ``o`` object of an ALGO_UPDATE (ccxt puts the event's time in ``T``)."""
    return StreamAlgo(
        symbol=str(raw["s"]),
        client_algo_id=str(raw.get("caid") or ""),
        algo_id=str(raw.get("aid") or ""),
        status=str(raw.get("X") or ""),
        actual_order_id=str(raw.get("ai") or ""),
        event_time=_time(raw["T"]) if raw.get("T") else datetime.now(tz=UTC),
    )


def stream_events_order(*, algos: list[StreamAlgo], fills: list[StreamFill]) -> list[StreamEvent]:
    """One batch's events in the order to apply them: the fills first (a close waits for no
    bookkeeping), then the algo updates, except one that names the order a fill of the batch
    came from under a client id not ours: it goes before, so that fill is found on its stop.

    ccxt keeps only an algo order's latest update (TRIGGERED then FINISHED arrive as FINISHED),
    so the order on the wire (TRIGGERED, the fill, FINISHED) cannot be kept as such; every
    update only moves an order forward, so none undoes what a fill recorded.
    """
    foreign = {
        f.fill.order_id
        for f in fills
        if f.client_order_id not in {a.client_algo_id for a in algos if a.symbol == f.symbol}
    }
    first = [a for a in algos if a.actual_order_id and a.actual_order_id in foreign]
    return [*first, *fills, *(a for a in algos if a not in first)]


# Trade ids remembered as handed over; ccxt's own cache keeps fewer (1,000 by default).
HANDED_KEPT = 10_000


class UserDataStream:
    """One connection of the user data stream through ``ccxt.pro.binanceusdm``."""

    def __init__(
        self,
        client_factory: Callable[[], ccxt.pro.binanceusdm],
        *,
        keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
    ) -> None:
        self.client = client_factory()
        self.keep_alive_seconds = keep_alive_seconds
        self._trades: asyncio.Future[list[dict[str, Any]]] | None = None
        self._orders: asyncio.Future[list[dict[str, Any]]] | None = None
        self._keeper: asyncio.Future[None] | None = None
        # Trade ids handed over, so a fill ccxt kept in its cache is handed over once.
        self._handed: OrderedDict[int, None] = OrderedDict()

    async def open(self, *, timeout: float = 10.0) -> None:
        """Create (or extend) the listen key and connect; return once connected."""
        try:
            await asyncio.wait_for(self._open(), timeout)
        except (TimeoutError, ccxt.BaseError, OSError) as e:
            raise StreamLost(f"could not connect the user data stream: {e}") from e

    async def _open(self) -> None:
        await self.client.load_markets()
        self._trades = asyncio.ensure_future(self.client.watch_my_trades())
        # Same connection: ccxt delivers ORDER_TRADE_UPDATE and ALGO_UPDATE as orders.
        self._orders = asyncio.ensure_future(self.client.watch_orders())
        while True:
            connections = [c for c in self.client.clients.values() if "listenKey" in c.url]
            if connections:
                await connections[0].connected
                self._keeper = asyncio.ensure_future(self._keep_alive())
                return
            if self._trades.done():
                self._trades.result()  # raises what went wrong
            await asyncio.sleep(0.005)

    async def next_events(self) -> list[StreamEvent]:
        """Wait for the events that arrived since the last call (one or more), in the order
        of ``stream_events_order``."""
        assert self._trades and self._orders and self._keeper, "open() first"
        held = self._held_fills()
        if held:
            return stream_events_order(algos=[], fills=held)
        # Not cancelled when the caller stops waiting: they are ccxt's subscriptions and ours.
        await asyncio.wait(
            {self._trades, self._orders, self._keeper}, return_when=asyncio.FIRST_COMPLETED
        )
        if self._keeper.done():
            self._keeper.result()  # raises StreamLost: the key could not be kept alive
        algos: list[StreamAlgo] = []
        fills: list[StreamFill] = []
        try:
            if self._orders.done():
                orders = self._orders.result()
                self._orders = asyncio.ensure_future(self.client.watch_orders())
                algos = [stream_algo_parse(o["info"]) for o in orders if "aid" in o["info"]]
            if self._trades.done():
                trades = self._trades.result()
                self._trades = asyncio.ensure_future(self.client.watch_my_trades())
                fills = self._hand_over(trades)
        except (ccxt.BaseError, OSError) as e:
            raise StreamLost(f"user data stream lost: {type(e).__name__}: {e}") from e
        return stream_events_order(algos=algos, fills=fills + self._held_fills())

    def _held_fills(self) -> list[StreamFill]:
        """Fills ccxt received while no watch was waiting: it keeps them in its cache and would
        hand them over only with the next fill (two fills arriving together, the second held
        back for as long as the account stays quiet)."""
        return self._hand_over(list(self.client.myTrades or ()))

    def _hand_over(self, trades: list[dict[str, Any]]) -> list[StreamFill]:
        fills = []
        for trade in trades:
            trade_id = int(trade["info"]["t"])  # the id stream_fill_parse reads
            if trade_id in self._handed:
                continue
            self._handed[trade_id] = None
            fills.append(stream_fill_parse(trade["info"]))
        while len(self._handed) > HANDED_KEPT:
            self._handed.popitem(last=False)
        return fills

    async def _keep_alive(self) -> None:
        """PUT the listen key every ``keep_alive_seconds`` (ccxt's own renewal is not relied
        on: it stops rescheduling itself). A refusal (-1125: the key expired) ends the
        connection's life."""
        while True:
            await asyncio.sleep(self.keep_alive_seconds)
            try:
                await self.client.fapiPrivatePutListenKey()
            except (ccxt.BaseError, OSError) as e:
                raise StreamLost(f"listen key not kept alive: {type(e).__name__}: {e}") from e

    async def close(self) -> None:
        for task in (self._trades, self._orders, self._keeper):
            if task is not None and not task.done():
                task.cancel()
        try:
            await self.client.close()
        except Exception as e:  # closing a broken connection may fail: it is gone either way
            logger.debug("closing the user data stream: %s", e)


def user_data_stream_factory(
    *, keep_alive_seconds: float = KEEP_ALIVE_SECONDS
) -> Callable[[], UserDataStream]:
    """Streams configured by the environment (EXCHANGE=paper|binance), like the REST gateway."""
    timeout_ms = int(float(settings.EXCHANGE_TIMEOUT_SECONDS) * 1000)
    if settings.EXCHANGE == "binance":
        key, secret = settings.BINANCE_API_KEY, settings.BINANCE_API_SECRET
        base_url, stream_url, demo = None, None, bool(settings.BINANCE_DEMO)
    else:
        key, secret = settings.PAPER_API_KEY, settings.PAPER_API_SECRET
        base_url, stream_url, demo = settings.PAPER_EXCHANGE_URL, settings.PAPER_STREAM_URL, False

    def client() -> ccxt.pro.binanceusdm:
        return create_ccxt_stream_client(
            api_key=key,
            api_secret=secret,
            base_url=base_url,
            stream_url=stream_url,
            demo=demo,
            timeout_ms=timeout_ms,
        )

    return lambda: UserDataStream(client, keep_alive_seconds=keep_alive_seconds)


__all__ = [
    "StreamAlgo",
    "StreamEvent",
    "StreamFill",
    "StreamLost",
    "UserDataStream",
    "stream_algo_parse",
    "stream_events_order",
    "stream_fill_parse",
]
