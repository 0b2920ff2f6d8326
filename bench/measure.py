"""The three measurements: guard pass by open positions, entry path, replay throughput."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.env import fast_gateway

BINANCE_WEIGHT_LIMIT_1M = 2400
BOT_SYMBOLS = 20
GUARD_INTERVAL_SECONDS = 5


def _requests(control: Any) -> int:
    return sum(int(n) for n in control.stats()["requests"].values())


def _weight(control: Any) -> int:
    return int(control.stats()["weight_1m"])


@dataclass
class GuardRow:
    positions: int
    requests: float
    weight: float
    queries: float
    wall_ms: float
    errors: list[str] = field(default_factory=list)


def positions_open(*, names: list[str], control: Any) -> tuple[int, list[str]]:
    """Open a LONG in each of ``names`` through the order path; return (opened, failures)."""
    from trading.models import Symbol
    from trading.services import position_open

    gateway = fast_gateway()
    opened, failures = 0, []
    for symbol in Symbol.objects.filter(name__in=names).order_by("name"):
        outcome = position_open(symbol=symbol, side="LONG", reason="bench", gateway=gateway)
        if outcome.ok:
            opened += 1
        else:
            failures.append(f"{symbol.name}: {outcome}")
    return opened, failures


def guard_measure(*, positions: int, passes: int, control: Any) -> GuardRow:
    """Median figures of ``passes`` guard passes (after one warm-up pass) over open positions."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from trading.guard import guard_pass

    requests, weights, queries, walls, errors = [], [], [], [], []
    guard_pass(gateway=fast_gateway())  # warm-up: first-pass bookkeeping is not the steady state
    while len(walls) < passes:
        gateway = fast_gateway()
        weight_before = _weight(control)
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            report = guard_pass(gateway=gateway)
            wall = (time.perf_counter() - started) * 1000
        weight = _weight(control) - weight_before
        if weight < 0:
            continue  # the exchange's minute window rolled over during the pass: measure again
        if report.error:
            errors.append(report.error)
        requests.append(report.requests)
        weights.append(weight)
        queries.append(len(captured.captured_queries))
        walls.append(wall)
    return GuardRow(
        positions=positions,
        requests=statistics.median(requests),
        weight=statistics.median(weights),
        queries=statistics.median(queries),
        wall_ms=statistics.median(walls),
        errors=errors,
    )


@dataclass
class EntryRow:
    runs: int
    requests: float
    wall_ms_median: float
    wall_ms_max: float
    by_endpoint: dict[str, int]


def entry_measure(*, symbol_name: str, runs: int, control: Any) -> EntryRow:
    """Decision (a LONG signal) to entry + TP + SL acknowledged, through ``trade_cycle_run``.

    Requests are counted by the exchange (the exits go out on cloned gateways). Each run's
    position is closed afterwards, outside the measurement.
    """
    from signals.cycles import trade_cycle_run
    from signals.types import Decision
    from trading.models import Position, Symbol
    from trading.services import position_close

    symbol = Symbol.objects.get(name=symbol_name)
    walls, requests = [], []
    by_endpoint: dict[str, int] = {}
    for _ in range(runs):
        gateway = fast_gateway()
        before = dict(control.stats()["requests"])
        started = time.perf_counter()
        outcome = trade_cycle_run(
            symbol_id=symbol.pk, signal=Decision(action="LONG", reason="bench"), gateway=gateway
        )
        walls.append((time.perf_counter() - started) * 1000)
        after = dict(control.stats()["requests"])
        if outcome.status != "opened":
            raise RuntimeError(f"entry bench: the cycle did not open: {outcome}")
        by_endpoint = {
            k: int(after.get(k, 0)) - int(before.get(k, 0))
            for k in after
            if int(after.get(k, 0)) != int(before.get(k, 0))
        }
        requests.append(sum(by_endpoint.values()))
        position = Position.objects.get(symbol=symbol, status=Position.Status.OPEN)
        closed = position_close(
            position=position, reason="MANUAL", forced_event=True, gateway=gateway
        )
        if not closed.ok:
            raise RuntimeError(f"entry bench: could not close: {closed}")
    return EntryRow(
        runs=runs,
        requests=statistics.median(requests),
        wall_ms_median=statistics.median(walls),
        wall_ms_max=max(walls),
        by_endpoint=by_endpoint,
    )


@dataclass
class ReplayRow:
    seconds: float
    cycles: int
    guard_passes: int
    cycles_per_second: float
    opened: int
    closed: int
    failed: int
    rejections: dict[str, int]


def replay_measure(*, seconds: float, control: Any, market_clock: Callable[[], int]) -> ReplayRow:
    """Round after round over every enabled symbol: its agent's cycle (klines → decision →
    order → fill), then one guard pass; for ``seconds`` of wall time.

    The replay serves candles at their recorded times, and the agents refuse candles older than
    two intervals by the wall clock; so before each round this process's clock is moved to the
    replay's market time (``market_clock``, ms). Client and exchange share the process, hence
    the clock: signatures, weight windows and the bot's timers stay consistent.
    """
    import time_machine

    from signals.cycles import trade_cycle_run
    from trading.guard import guard_pass
    from trading.models import Position, Symbol

    symbol_ids = list(Symbol.objects.filter(enabled=True).values_list("pk", flat=True))
    first_id = Position.objects.order_by("-id").values_list("id", flat=True).first() or 0
    cycles = passes = failed = 0
    started = time.perf_counter()
    deadline = started + seconds
    with time_machine.travel(_at(market_clock()), tick=True) as traveller:
        while time.perf_counter() < deadline:
            traveller.move_to(_at(market_clock()))
            gateway = fast_gateway()
            for symbol_id in symbol_ids:
                outcome = trade_cycle_run(symbol_id=symbol_id, gateway=gateway)
                cycles += 1
                failed += outcome.failed
            guard_pass(gateway=gateway)
            passes += 1
    elapsed = time.perf_counter() - started
    replayed = Position.objects.filter(id__gt=first_id)
    return ReplayRow(
        seconds=elapsed,
        cycles=cycles,
        guard_passes=passes,
        cycles_per_second=cycles / elapsed,
        opened=replayed.exclude(entry_price=None).count(),
        closed=replayed.filter(status=Position.Status.CLOSED).count(),
        failed=failed,
        rejections=dict(control.stats()["rejections"]),
    )


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def weight_share(*, guard_weight_per_pass: float) -> tuple[float, float]:
    """(weight per minute, share of Binance's 2,400) of the guard of a 20-symbol bot at 5 s."""
    per_minute = guard_weight_per_pass * 60 / GUARD_INTERVAL_SECONDS
    return per_minute, per_minute / BINANCE_WEIGHT_LIMIT_1M
