"""The stream process: connect, reconcile the gap, apply events, and start over with backoff.

Order of work on every (re)connection: open the stream first, so nothing that happens from
then on is missed, then reconcile over REST everything that happened while it was down, and
only then apply the buffered and new events (they are idempotent, so an event the reconcile
already accounted for changes nothing). Database and REST work runs on one worker thread, in
the order the events arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import close_old_connections
from django.utils import timezone

from trading.exchange import ExchangeGateway, exchange_gateway
from trading.exchange_stream import StreamFill, StreamLost, UserDataStream
from trading.locks import db_write_lock
from trading.stream import stream_fill_apply, stream_gap_reconcile, stream_state_report

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class StreamSettings:
    """Timings of the stream process (seconds)."""

    report_seconds: float = 5.0  # how often the state (heartbeat) is stored
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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-db")
        self._gateway: ExchangeGateway | None = None

    async def _db(self, function: Callable[..., T], /, **kwargs: Any) -> T:
        """Run ``function`` on the worker thread (Django and REST are synchronous).

        Under the process's database write lock: SQLite fails a second writer at once, and the
        stream's jobs write; with PostgreSQL, in its own process, the lock is never contended.
        """

        def job() -> T:
            with db_write_lock:
                return function(**kwargs)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, job)

    async def run(self, stop: asyncio.Event) -> None:
        self._gateway = await self._db(self.gateway_factory)
        delay = self.settings.backoff_initial
        try:
            while not stop.is_set():
                stream = self.stream_factory()
                try:
                    await stream.open()
                    self.counters.connects += 1
                    logger.info("[Stream] connected; reconciling the gap over REST")
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
            await self._report(connected=False, error="stopped")
            await self._db(close_old_connections)
            self._executor.shutdown(wait=True)

    async def _consume(self, stream: UserDataStream, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self.settings.report_seconds
        next_reconcile = loop.time() + self.settings.reconcile_seconds
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                fills_future = asyncio.ensure_future(stream.next_fills())
                timeout = max(0.0, min(next_report, next_reconcile) - loop.time())
                done, _ = await asyncio.wait(
                    {fills_future, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if fills_future in done:
                    for event in fills_future.result():
                        await self._apply(event)
                else:
                    fills_future.cancel()
                    if stop.is_set():
                        return
                if loop.time() >= next_reconcile:
                    await self._reconcile()
                    next_reconcile = loop.time() + self.settings.reconcile_seconds
                if loop.time() >= next_report:
                    await self._report(connected=True)
                    next_report = loop.time() + self.settings.report_seconds
        finally:
            stopping.cancel()

    async def _apply(self, event: StreamFill) -> None:
        received = timezone.now()
        try:
            applied = await self._db(stream_fill_apply, event=event, gateway=self._gateway)
        except Exception:
            # One event that cannot be applied must not stop the others; the guard and the
            # next reconcile record what it would have.
            logger.exception("[Stream] could not apply %s", event)
            return
        self.counters.events += 1
        self.counters.fills_recorded += applied.recorded
        self.counters.last_event_at = received
        self.counters.lag_ms = int((received - event.event_time).total_seconds() * 1000)
        if applied.closed is not None:
            self.counters.closes_recorded += 1
            logger.info(
                "[Stream] %s close recorded %d ms after its fill",
                applied.closed.symbol.name,
                int((time.time() - event.event_time.timestamp()) * 1000),
            )

    async def _reconcile(self) -> None:
        report = await self._db(stream_gap_reconcile, gateway=self._gateway)
        self.counters.reconciles += 1
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
                error=error,
            )

        try:
            await self._db(write)
        except Exception:  # the state is informative: a failed write must not stop the stream
            logger.exception("[Stream] could not store its state")
