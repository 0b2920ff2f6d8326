"""The user data stream: the engine's order, fill, balance and position changes as Binance's
WebSocket events, served by aiohttp on a port of its own in the paper exchange's process.

Paths are Binance's: ``/private/ws?listenKey=...`` (what ccxt connects to) and
``/ws/<listenKey>``. Events: ``ORDER_TRADE_UPDATE`` (every status change and fill),
``ALGO_UPDATE`` (conditional orders), ``ACCOUNT_UPDATE`` (balances and positions, with the
reason), ``MARGIN_CALL`` and ``listenKeyExpired``. A connection is closed after
``max_connection_seconds`` (24 h), as Binance does.

The engine calls :meth:`UserStream.on_engine_event` under its lock; the event is formatted there
(so it shows the state of that moment) and handed to the server's loop. Faults (see
:class:`StreamFaults`) drop every connection, delay events or lose them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from paper.listen_keys import DEFAULT_VALIDITY_MS, ListenKeyBook
from paper.records import ZERO, AlgoOrder, Order, Trade, avg_price, money
from paper.symbols import symbols

if TYPE_CHECKING:
    from paper.engine import Engine

logger = logging.getLogger(__name__)

DAY_SECONDS = 24 * 3600
# How often the server looks for expired listen keys and connections past their lifetime.
SWEEP_SECONDS = 0.05
# Cross margin ratio (maintenance margin / margin balance) at which a MARGIN_CALL goes out.
MARGIN_CALL_RATIO = Decimal("0.8")
# ACCOUNT_UPDATE reason for each wallet movement the engine books outside a fill.
_INCOME_REASONS = {
    "FUNDING_FEE": "FUNDING_FEE",
    "INSURANCE_CLEAR": "INSURANCE_CLEAR",
}


@dataclass
class StreamFaults:
    """Injected faults of the stream: events delayed by ``delay_seconds``, the next ``lose``
    events never sent."""

    delay_seconds: float = 0.0
    lose: int = 0

    def take_loss(self) -> bool:
        if self.lose > 0:
            self.lose -= 1
            return True
        return False


@dataclass
class StreamStats:
    connections: int = 0
    events_sent: int = 0
    events_lost: int = 0
    connections_total: int = 0
    closed_by_lifetime: int = 0


@dataclass(eq=False)
class _Connection:
    key: str
    ws: web.WebSocketResponse
    opened: float
    transport: asyncio.BaseTransport | None = None
    queue: asyncio.Queue[tuple[float, str]] = field(default_factory=asyncio.Queue)


class UserStream:
    """Events of one account, fanned out to its open connections."""

    def __init__(
        self,
        engine: Engine,
        *,
        keys: ListenKeyBook | None = None,
        max_connection_seconds: float = DAY_SECONDS,
    ) -> None:
        self.engine = engine
        self.keys = keys or ListenKeyBook()
        self.max_connection_seconds = max_connection_seconds
        self.faults = StreamFaults()
        self.stats = StreamStats()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._margin_called = False
        engine.observers.append(self.on_engine_event)
        engine.listeners.append(self.on_price)

    # ------------------------------------------------------------------ engine side
    def on_engine_event(self, kind: str, *records: Any) -> None:
        """Format one engine change as Binance's event(s) and send them (under engine lock)."""
        if not self._has_connections():
            return
        for event in self._events(kind, records):
            self.publish(event)

    def _has_connections(self) -> bool:
        with self._lock:
            return bool(self._connections)

    def _events(self, kind: str, records: tuple[Any, ...]) -> list[dict[str, Any]]:
        engine = self.engine
        now = engine.now()
        if kind == "order":
            (order,) = records
            return [order_trade_update(order, now=now)]
        if kind == "trade":
            order, trade = records
            return [
                account_update(engine, reason="ORDER", symbol=order.symbol, now=now),
                order_trade_update(order, trade=trade, now=now),
            ]
        if kind == "algo":
            (algo,) = records
            return [algo_update(engine, algo, now=now)]
        if kind == "income":
            (income,) = records
            reason = _INCOME_REASONS.get(income.income_type)
            if income.income_type == "TRANSFER":
                reason = "DEPOSIT" if income.income > 0 else "WITHDRAW"
            if reason is None:
                return []  # realized PnL and fees arrive with their fill
            return [account_update(engine, reason=reason, symbol=income.symbol or None, now=now)]
        return []

    def on_price(self, symbol: str, price: Decimal) -> None:
        """Send a MARGIN_CALL when the cross margin ratio crosses ``MARGIN_CALL_RATIO``."""
        if not self._has_connections():
            return
        with self.engine.lock:
            event = margin_call(self.engine)
        if event is None:
            self._margin_called = False
        elif not self._margin_called:
            self._margin_called = True
            self.publish(event)

    def publish(self, event: dict[str, Any]) -> None:
        """Send ``event`` to every open connection (unless a fault loses it)."""
        if self.faults.take_loss():
            self.stats.events_lost += 1
            return
        payload = json.dumps(event, separators=(",", ":"))
        due = time.monotonic() + self.faults.delay_seconds
        loop = self.loop
        if loop is None:
            return
        with self._lock:
            targets = list(self._connections)
        for conn in targets:
            loop.call_soon_threadsafe(conn.queue.put_nowait, (due, payload))

    # ------------------------------------------------------------------ control
    def reset(self) -> None:
        """Faults off, counters at zero, Binance's key validity and connection lifetime back
        (connections and the key stay)."""
        self.faults = StreamFaults()
        self.stats = StreamStats()
        self.keys.validity_ms = DEFAULT_VALIDITY_MS
        self.max_connection_seconds = DAY_SECONDS
        self._margin_called = False

    def drop_connections(self) -> int:
        """Close every connection now, without a closing handshake reason (a network fault)."""
        with self._lock:
            targets = list(self._connections)
        if self.loop is not None:
            for conn in targets:
                asyncio.run_coroutine_threadsafe(_abort(conn), self.loop)
        return len(targets)

    def expire_key(self) -> bool:
        """Expire the listen key now (as if 60 minutes passed without a keep-alive)."""
        key = self.keys.active_key()
        if key is None:
            return False
        self.keys.expire_now()
        return True

    def status(self) -> dict[str, Any]:
        with self._lock:
            connections = len(self._connections)
        return {
            "connections": connections,
            "connections_total": self.stats.connections_total,
            "events_sent": self.stats.events_sent,
            "events_lost": self.stats.events_lost,
            "closed_by_lifetime": self.stats.closed_by_lifetime,
            "delay_seconds": self.faults.delay_seconds,
            "lose": self.faults.lose,
            "listen_key_validity_seconds": self.keys.validity_ms / 1000,
            "max_connection_seconds": self.max_connection_seconds,
        }

    # ------------------------------------------------------------------ server side
    async def handle_private(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, request.query.get("listenKey", ""))

    async def handle_path(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, request.match_info["listen_key"])

    async def _serve(self, request: web.Request, key: str) -> web.StreamResponse:
        if not self.keys.is_valid(key):
            return web.json_response({"code": -1125, "msg": "Invalid listenKey."}, status=400)
        ws = web.WebSocketResponse(heartbeat=None, autoping=True)
        conn = _Connection(key=key, ws=ws, opened=time.monotonic(), transport=request.transport)
        # Registered before the handshake completes: once the client is connected, no event
        # can fall between its connection and its registration.
        with self._lock:
            self._connections.add(conn)
            self.stats.connections_total += 1
        sender = None
        try:
            await ws.prepare(request)
            sender = asyncio.ensure_future(self._send_loop(conn))
            async for message in ws:
                if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break  # the user stream takes no requests: everything else is ignored
        finally:
            with self._lock:
                self._connections.discard(conn)
            if sender is not None:
                sender.cancel()
        return ws

    async def _send_loop(self, conn: _Connection) -> None:
        while not conn.ws.closed:
            due, payload = await conn.queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await conn.ws.send_str(payload)
            except (ConnectionError, RuntimeError):
                return
            self.stats.events_sent += 1

    async def sweep(self) -> None:
        """Expired keys and connections past their lifetime, checked every ``SWEEP_SECONDS``."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            expired = self.keys.expired_key()
            with self._lock:
                targets = list(self._connections)
            now = time.monotonic()
            for conn in targets:
                if expired is not None and conn.key == expired:
                    event = {
                        "e": "listenKeyExpired",
                        "E": str(self.engine.now()),
                        "listenKey": expired,
                    }
                    try:
                        await conn.ws.send_str(json.dumps(event, separators=(",", ":")))
                    except (ConnectionError, RuntimeError):
                        pass
                    await conn.ws.close()
                elif not self.keys.is_valid(conn.key):
                    await conn.ws.close()  # the key was deleted
                elif now - conn.opened >= self.max_connection_seconds:
                    self.stats.closed_by_lifetime += 1
                    await conn.ws.close()


async def _abort(conn: _Connection) -> None:
    # A dropped connection: no close frame, the socket just goes away.
    if conn.transport is not None:
        conn.transport.abort()
    else:
        await conn.ws.close()


class UserStreamServer:
    """Serve a :class:`UserStream` from a thread with its own asyncio loop."""

    def __init__(self, stream: UserStream, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stream = stream
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL as ccxt's ``urls['api']['ws']['linear']`` expects it (``.../ws``)."""
        return f"ws://{self.host}:{self.port}/ws"

    def start(self) -> UserStreamServer:
        self._thread = threading.Thread(target=self._run, name="paper-stream", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self.stream.loop = self._loop
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/private/ws", self.stream.handle_private)
        app.router.add_get("/ws/{listen_key}", self.stream.handle_path)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        self._sweeper = asyncio.ensure_future(self.stream.sweep())

    def stop(self) -> None:
        if self._thread is None:
            self._sock.close()
            return
        future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
        try:
            future.result(timeout=5)
        except Exception:  # a stop must not fail the exchange's shutdown
            logger.exception("paper stream did not stop cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self.stream.loop = None

    async def _stop(self) -> None:
        self._sweeper.cancel()
        if self._runner is not None:
            await self._runner.cleanup()


# --------------------------------------------------------------------------- Binance's shapes
def order_trade_update(order: Order, *, trade: Trade | None = None, now: int) -> dict[str, Any]:
    """``ORDER_TRADE_UPDATE`` for an order's status change, or one of its fills."""
    sym = symbols()[order.symbol]
    execution = "TRADE" if trade is not None else _EXECUTION.get(order.status, order.status)
    body = {
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": sym.fmt_qty(order.orig_qty),
        "p": sym.fmt_price(order.price),
        "ap": avg_price(sym, order.avg),
        "sp": sym.fmt_price(order.stop_price),
        "x": execution,
        "X": order.status,
        "i": order.order_id,
        "l": sym.fmt_qty(trade.qty) if trade else "0",
        "z": sym.fmt_qty(order.executed_qty),
        "L": sym.fmt_price(trade.price) if trade else "0",
        "n": money(trade.commission) if trade else "0",
        "T": trade.time if trade else order.update_time,
        "t": trade.trade_id if trade else 0,
        "b": "0",
        "a": "0",
        "m": trade.maker if trade else False,
        "R": order.reduce_only,
        "wt": order.working_type,
        "ot": order.orig_type or order.type,
        "ps": "BOTH",
        "cp": order.close_position,
        "rp": money(trade.realized_pnl) if trade else "0",
        "pP": order.price_protect,
        "si": 0,
        "ss": 0,
        "V": "EXPIRE_MAKER",
        "pm": "NONE",
        "gtd": order.good_till_date,
    }
    if trade is not None:
        body["N"] = "USDT"
    return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": body["T"], "o": body}


_EXECUTION = {"NEW": "NEW", "CANCELED": "CANCELED", "EXPIRED": "EXPIRED", "FILLED": "TRADE"}


def algo_update(engine: Engine, algo: AlgoOrder, *, now: int) -> dict[str, Any]:
    """``ALGO_UPDATE``: a conditional order new, triggered, finished, cancelled or expired."""
    sym = symbols()[algo.symbol]
    actual = engine.orders.get(algo.actual_order_id) if algo.actual_order_id else None
    body: dict[str, Any] = {
        "caid": algo.client_algo_id,
        "aid": algo.algo_id,
        "at": "CONDITIONAL",
        "o": algo.order_type,
        "s": algo.symbol,
        "S": algo.side,
        "ps": "BOTH",
        "f": algo.time_in_force,
        "q": sym.fmt_qty(algo.quantity),
        "X": algo.algo_status,
        "ai": str(algo.actual_order_id) if algo.actual_order_id else "",
        "ap": avg_price(sym, actual.avg if actual else ZERO),
        "aq": sym.fmt_qty(actual.executed_qty if actual else ZERO),
        "act": actual.type if actual else "0",
        "tp": sym.fmt_price(algo.trigger_price),
        "p": sym.fmt_price(algo.price),
        "V": "EXPIRE_MAKER",
        "wt": algo.working_type,
        "pm": "NONE",
        "cp": algo.close_position,
        "pP": algo.price_protect,
        "R": algo.reduce_only,
        "tt": algo.trigger_time,
        "gtd": 0,
    }
    if algo.algo_status == "EXPIRED":
        body["rm"] = "Reduce Only reject"
    return {"e": "ALGO_UPDATE", "T": algo.update_time, "E": now, "o": body}


def account_update(engine: Engine, *, reason: str, symbol: str | None, now: int) -> dict[str, Any]:
    """``ACCOUNT_UPDATE``: the USDT balance and the position of ``symbol`` (if any)."""
    positions = []
    if symbol is not None and symbol in engine.positions:
        pos = engine.positions[symbol]
        sym = symbols()[symbol]
        realized = sum((t.realized_pnl for t in engine.trades if t.symbol == symbol), ZERO)
        positions.append(
            {
                "s": symbol,
                "pa": sym.fmt_qty(pos.amount),
                "ep": _plain(pos.entry_price),
                "bep": _plain(engine._break_even(pos)),
                "cr": money(realized),
                "up": money(engine._unrealized(pos)),
                "mt": "isolated" if engine._is_isolated(symbol) else "cross",
                "iw": money(pos.isolated_wallet),
                "ps": "BOTH",
            }
        )
    balance = {
        "a": "USDT",
        "wb": money(engine.usdt),
        "cw": money(engine._cross_wallet()),
        "bc": "0",
    }
    return {
        "e": "ACCOUNT_UPDATE",
        "E": now,
        "T": now,
        "a": {"m": reason, "B": [balance], "P": positions},
    }


def margin_call(engine: Engine) -> dict[str, Any] | None:
    """``MARGIN_CALL`` when the cross positions' margin ratio is at or past the threshold."""
    cross = engine._cross_positions()
    if not cross:
        return None
    balance = engine._cross_wallet() + sum((engine._unrealized(p) for p in cross), ZERO)
    maint = sum((engine._maint_margin(p) for p in cross), ZERO)
    if balance > 0 and maint / balance < MARGIN_CALL_RATIO:
        return None
    rows = []
    for pos in cross:
        sym = symbols()[pos.symbol]
        rows.append(
            {
                "s": pos.symbol,
                "ps": "BOTH",
                "pa": sym.fmt_qty(pos.amount),
                "mt": "CROSSED",
                "iw": "0",
                "mp": sym.fmt_price(engine.mark[pos.symbol]),
                "up": money(engine._unrealized(pos)),
                "mm": money(engine._maint_margin(pos)),
            }
        )
    return {"e": "MARGIN_CALL", "E": engine.now(), "cw": money(engine._cross_wallet()), "p": rows}


def _plain(value: Decimal) -> str:
    if not value:
        return "0"
    return f"{value.quantize(Decimal('1e-8')).normalize():f}"


__all__ = [
    "StreamFaults",
    "UserStream",
    "UserStreamServer",
    "account_update",
    "algo_update",
    "margin_call",
    "order_trade_update",
]
