"""Fixtures of the user data stream tests: the stream process run in a thread of the test, on
the paper exchange's own stream, through ccxt's WebSocket client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from exchange.stream import user_data_stream_factory
from tests.guard.conftest import (  # noqa: F401 - shared fixtures
    btc,
    fast_gateway,
    gateway,
    guard,
    market,
)
from trading.locks import db_write_lock
from trading.models import Fill, Position
from trading.stream_runner import StreamRunner, StreamSettings


@pytest.fixture
def stream_paper(paper: object, paper_server: object, settings: object) -> object:
    """The paper exchange with its stream back to normal, and the settings pointed at it."""
    settings.PAPER_STREAM_URL = paper_server.stream_url
    paper.stream(
        lose=0,
        delay_seconds=0,
        listen_key_validity_seconds=3600,
        max_connection_seconds=86400,
        action="drop",
    )
    return paper


@dataclass
class RunningStream:
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


@pytest.fixture
def start_stream(stream_paper: object) -> Iterator[Callable[..., RunningStream]]:
    """Start the stream process's runner in a thread; stopped at the end of the test."""
    started: list[RunningStream] = []

    def start(**settings: float) -> RunningStream:
        keep_alive = settings.pop("keep_alive_seconds", 60.0)
        runner = StreamRunner(
            stream_factory=user_data_stream_factory(keep_alive_seconds=keep_alive),
            gateway_factory=fast_gateway,
            settings=StreamSettings(
                **{"report_seconds": 0.2, "reconcile_seconds": 3600, "backoff_initial": 0.05}
                | settings
            ),
        )
        loop = asyncio.new_event_loop()
        stop_event = asyncio.Event()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_until_complete(runner.run(stop_event))
            loop.close()

        thread = threading.Thread(target=run, name="test-stream", daemon=True)
        thread.start()
        ready.wait(5)
        running = RunningStream(runner, loop, stop_event, thread)
        started.append(running)
        running.wait_connected()
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


def ledger_matches_exchange(*, symbol: str, gateway: object) -> None:  # noqa: F811
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
    with db_write_lock:  # SQLite: the stream's thread may be writing
        position.refresh_from_db()
    return position.status == Position.Status.CLOSED
