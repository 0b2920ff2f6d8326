"""The stream process's runner in a thread of the test, and what to wait for and compare."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from exchange.gateway import ExchangeGateway
from trading.locks import db_write_lock
from trading.models import Fill, Position
from trading.stream_runner import StreamRunner

T = TypeVar("T")


@dataclass
class RunningStream:
    """A StreamRunner running its loop in a thread; stop() ends it."""

    runner: StreamRunner
    loop: asyncio.AbstractEventLoop
    stop_event: asyncio.Event
    thread: threading.Thread

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the stream did not stop"

    def wait_connected(self, timeout: float = 10.0) -> None:
        wait_for(self.runner.connected.is_set, timeout, "the stream to connect")

    def wait_disconnected(self, timeout: float = 10.0) -> None:
        wait_for(lambda: not self.runner.connected.is_set(), timeout, "the stream to go down")


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` until true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def ledger_matches_exchange(*, symbol: str, gateway: ExchangeGateway) -> None:
    """Every trade the exchange has for ``symbol`` is in the ledger once, with its numbers."""
    trades = gateway.fetch_fills(symbol=symbol, since=None)
    exchange = {
        (t.trade_id, t.order_id, t.side, t.price, t.quantity, t.realized_pnl, t.commission)
        for t in trades
    }
    with db_write_lock:
        rows = list(Fill.objects.filter(symbol__name=symbol))
    ledger = {
        (
            f.trade_id,
            f.exchange_order_id,
            f.side,
            f.price,
            f.quantity,
            f.realized_pnl,
            f.commission,
        )
        for f in rows
    }
    assert ledger == exchange
    assert len(rows) == len(trades)


def closed(position: Position) -> bool:
    """Whether ``position`` is CLOSED in the database, read under the write lock."""
    with db_write_lock:  # SQLite: the stream's thread may be writing
        position.refresh_from_db()
    return position.status == Position.Status.CLOSED


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on a fresh event loop in a thread of its own: the session's
    browser tests keep an event loop running in the main thread, where asyncio.run refuses."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
