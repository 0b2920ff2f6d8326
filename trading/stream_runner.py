"""The stream process: connect, reconcile the gap, apply events, and start over with backoff.

Order of work on every (re)connection: open the stream first, so nothing that happens from
then on is missed, then reconcile over REST everything that happened while it was down, and
only then apply the buffered and new events (they are idempotent, so an event the reconcile
already accounted for changes nothing).

The event loop itself never waits on the database or a REST request: each event is applied on
its symbol's lane (a worker thread; one symbol always on the same one, so in the order the
events arrived), and the heartbeat and the periodic reconcile run on threads of their own, in
the background, so neither holds an event back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import close_old_connections, connection
from django.utils import timezone

from exchange.gateway import ExchangeGateway
from exchange.stream import StreamEvent, StreamFill, StreamLost, UserDataStream
from trading.gateway import exchange_gateway
from trading.locks import db_write_lock
from trading.stream import (
    STOPPED,
    stream_event_apply,
    stream_gap_reconcile,
    stream_state_report,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class StreamSettings:
    """Timings of the stream process (seconds)."""

    report_seconds: float = 5.0  # how often the state (heartbeat) is stored
    # Events are applied on this many worker threads, each symbol always on the same one: in
    # order per symbol, and a slow close of one symbol does not hold up another's.
    lanes: int = 4
    reconcile_seconds: float = 60.0  # a REST reconcile even without a gap (lost events)
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


@dataclass
class StreamCounters:
    events: int = 0
    fills_recorded: int = 0
    closes_recorded: int = 0  # from events
    reconcile_closes: int = 0  # by a REST reconcile of a gap
    reconciles: int = 0
    last_reconcile_at: datetime | None = None
    algo_updates: int = 0  # ALGO_UPDATE events applied
    connects: int = 0
    last_event_at: datetime | None = None
    lag_ms: int | None = None


class StreamRunner:
    """Run the user data stream until ``stop`` is set."""

    def __init__(
        self,
        *,
        stream_factory: Callable[[], UserDataStream],
        gateway_factory: Callable[[], ExchangeGateway] = exchange_gateway,
        settings: StreamSettings | None = None,
    ) -> None:
        self.stream_factory = stream_factory
        self.gateway_factory = gateway_factory
        self.settings = settings or StreamSettings()
        self.counters = StreamCounters()
        self.connected = asyncio.Event()
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stream-lane{n}")
            for n in range(max(1, self.settings.lanes))
        ]
        # The heartbeat's and the periodic reconcile's own threads (the last two lanes).
        self._report_lane = len(self._lanes)
        self._reconcile_lane = len(self._lanes) + 1
        self._lanes += [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-report"),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-reconcile"),
        ]
        self._event_lanes = max(1, self.settings.lanes)
        self._gateways: list[ExchangeGateway] = []
        self._pending: set[asyncio.Future[None]] = set()
        self._background: dict[str, asyncio.Future[None]] = {}

    async def _db(self, function: Callable[..., T], /, lane: int = 0, **kwargs: Any) -> T:
        """Run ``function`` on worker thread ``lane`` (Django and REST are synchronous).

        With SQLite, under the process's database write lock: SQLite fails a second writer at
        once. Not otherwise: the job holds it across exchange requests, and a thread of the
        same process waiting for it could be the one holding the symbol's lease we wait for.
        """

        def job() -> T:
            if connection.vendor != "sqlite":
                return function(**kwargs)
            with db_write_lock:
                return function(**kwargs)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._lanes[lane], job)

    def _lane_of(self, symbol: str) -> int:
        return zlib.crc32(symbol.encode()) % self._event_lanes

    def _in_background(self, name: str, job: Callable[[], Any]) -> None:
        """Start ``job`` unless the previous one of that name still runs (then it is skipped:
        the next tick starts it again)."""
        running = self._background.get(name)
        if running is not None and not running.done():
            return
        self._background[name] = asyncio.ensure_future(job())

    async def run(self, stop: asyncio.Event) -> None:
        first = await self._db(self.gateway_factory)
        # A gateway is used by one thread at a time: one per lane (the reconcile's is the last).
        self._gateways = [first, *(first.clone() for _ in self._lanes[1:])]
        delay = self.settings.backoff_initial
        try:
            while not stop.is_set():
                stream = self.stream_factory()
                try:
                    await stream.open()
                    self.counters.connects += 1
                    logger.info("[Stream] connected; reconciling the gap over REST")
                    await self._settle()
                    await self._reconcile()
                    self.connected.set()
                    await self._report(connected=True)
                    delay = self.settings.backoff_initial
                    await self._consume(stream, stop)
                except StreamLost as e:
                    self.connected.clear()
                    logger.warning("[Stream] down: %s; again in %.1f s", e, delay)
                    await self._report(connected=False, error=str(e))
                finally:
                    self.connected.clear()
                    await stream.close()
                if stop.is_set():
                    break
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, self.settings.backoff_max)
        finally:
            await self._settle()
            background = [task for task in self._background.values() if not task.done()]
            if background:
                await asyncio.gather(*background, return_exceptions=True)
            await self._report(connected=False, error=STOPPED)
            for lane in range(len(self._lanes)):
                await self._db(close_old_connections, lane=lane)
            for executor in self._lanes:
                executor.shutdown(wait=True)

    async def _consume(self, stream: UserDataStream, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self.settings.report_seconds
        next_reconcile = loop.time() + self.settings.reconcile_seconds
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                events_future = asyncio.ensure_future(stream.next_events())
                timeout = max(0.0, min(next_report, next_reconcile) - loop.time())
                done, _ = await asyncio.wait(
                    {events_future, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if events_future in done:
                    for event in events_future.result():
                        task = asyncio.ensure_future(self._apply(event))
                        self._pending.add(task)
                        task.add_done_callback(self._pending.discard)
                else:
                    events_future.cancel()
                    if stop.is_set():
                        return
                # Neither is awaited here: events keep flowing while they run.
                if loop.time() >= next_reconcile:
                    self._in_background("reconcile", self._reconcile)
                    next_reconcile = loop.time() + self.settings.reconcile_seconds
                if loop.time() >= next_report:
                    self._in_background("report", lambda: self._report(connected=True))
                    next_report = loop.time() + self.settings.report_seconds
        finally:
            stopping.cancel()

    async def _settle(self) -> None:
        """Wait for the events being applied."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _apply(self, event: StreamEvent) -> None:
        received = timezone.now()
        lane = self._lane_of(event.symbol)
        try:
            applied = await self._db(
                stream_event_apply, lane=lane, event=event, gateway=self._gateways[lane]
            )
        except Exception:
            # One event that cannot be applied must not stop the others; the guard and the
            # next reconcile record what it would have.
            logger.exception("[Stream] could not apply %s", event)
            return
        self.counters.events += 1
        self.counters.last_event_at = received
        self.counters.lag_ms = int((received - event.event_time).total_seconds() * 1000)
        if not isinstance(event, StreamFill):
            self.counters.algo_updates += 1
            return
        self.counters.fills_recorded += applied.recorded
        if applied.closed is not None:
            self.counters.closes_recorded += 1
            logger.info(
                "[Stream] %s close recorded %d ms after its fill",
                applied.closed.symbol.name,
                int((time.time() - event.event_time.timestamp()) * 1000),
            )

    async def _reconcile(self) -> None:
        lane = self._reconcile_lane
        report = await self._db(stream_gap_reconcile, lane=lane, gateway=self._gateways[lane])
        self.counters.reconciles += 1
        self.counters.last_reconcile_at = timezone.now()
        self.counters.reconcile_closes += len(report.closed)
        if report.closed:
            logger.info("[Stream] reconcile recorded %d close(s)", len(report.closed))

    async def _report(self, *, connected: bool, error: str = "") -> None:
        c = self.counters

        def write() -> None:
            stream_state_report(
                connected=connected,
                last_event_at=c.last_event_at,
                lag_ms=c.lag_ms,
                events=c.events,
                reconciles=c.reconciles,
                last_reconcile_at=c.last_reconcile_at,
                error=error,
            )

        try:
            await self._db(write, lane=self._report_lane)
        except Exception:  # the state is informative: a failed write must not stop the stream
            logger.exception("[Stream] could not store its state")
