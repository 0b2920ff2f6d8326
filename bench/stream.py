"""Fill → close recorded, with the user data stream and without; the guard's weight per minute.

``python -m bench.stream [--closes 100] [--batch 20] [--spacing 1.0] [--latency-only]
[--output FILE]``

Latency: positions are opened through the order path on ``--batch`` symbols at a time; their
stops are then hit one by one at random moments, ``--spacing`` seconds apart on average (the
guard's 5 s cadence sees them at every phase), and each close's
latency is its close event's time minus its exit fill's exchange time. The guard runs every 5 s
in both runs (it is the backstop in production too); the stream process's runner runs in the
first. Weight: the real guard's passes with 2, 20 and 50 enabled symbols and 1 to 50 open
positions, over five minutes of passes (its sweep and balance cadences included), per minute at
one pass every 5 s, against Binance's 2,400.

Everything runs in this process (paper exchange, stream, guard, order path share one GIL: wall
times are a ceiling). Figures go to stdout and ``--output`` (under ``var/``, not tracked).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import env

OUTPUT = Path(__file__).resolve().parents[1] / "var" / "bench-stream.md"
LOG = OUTPUT.with_name("bench-stream-process.log")  # the stream process's own lines
GUARD_SECONDS = 5.0
WEIGHT_LIMIT = 2400
SYMBOL_COUNTS = (2, 20, 50)


@dataclass
class LatencyRow:
    mode: str
    closes: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    by_actor: dict[str, int] = field(default_factory=dict)
    unclosed: int = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__)
    parser.add_argument("--closes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument(
        "--spacing", type=float, default=1.0, help="mean seconds between two stops hit"
    )
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--weight-only", action="store_true", help="skip the latency runs")
    parser.add_argument("--latency-only", action="store_true", help="skip the weight runs")
    parser.add_argument(
        "--stream-process",
        action="store_true",
        help="run the stream as its own process (`manage.py stream`, as deployed) rather than "
        "on a thread of the bench's process",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    random.seed(args.seed)
    synthetic = env.synthetic_symbols(max(SYMBOL_COUNTS))
    with env.bench_database() as engine:
        from paper.testing import PaperControl, PaperExchangeServer

        with PaperExchangeServer(port=0, feed="static", extra_symbols=len(synthetic)) as server:
            control = PaperControl(server.url)
            control.configure(weight_limit_1m=10**9, orders_10s=10**9, orders_1m=10**9)
            control.set_balance("USDT", "1000000")
            env.django_setup(paper_url=server.url)
            from django.conf import settings

            settings.PAPER_STREAM_URL = server.stream_url
            env.symbols_enable(synthetic, max_open_positions=len(synthetic) + 10)
            names = _symbol_names(args.batch)
            rows = (
                []
                if args.weight_only
                else [
                    latency_measure(
                        stream=stream,
                        closes=args.closes,
                        names=names,
                        control=control,
                        spacing=args.spacing,
                        process=args.stream_process,
                        stream_url=server.stream_url,
                    )
                    for stream in (True, False)
                ]
            )
            weights = [] if args.latency_only else weight_measure(control=control)
    lines = _report(
        engine=engine, rows=rows, weights=weights, batch=args.batch, spacing=args.spacing
    )
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


def _symbol_names(count: int) -> list[str]:
    """``count`` symbols; BTCUSDT's minimum quantity is above the bench's small sizes."""
    from trading.models import Symbol

    rows = Symbol.objects.exclude(name="BTCUSDT").order_by("id").values_list("name", flat=True)
    return list(rows[:count])


# --------------------------------------------------------------------------- latency
def latency_measure(
    *,
    stream: bool,
    closes: int,
    names: list[str],
    control: Any,
    spacing: float,
    process: bool = False,
    stream_url: str = "",
) -> LatencyRow:
    from bench.measure import positions_open
    from trading.models import Position

    guard = _GuardLoop().start()
    runner: _StreamThread | _StreamProcess | None = None
    if stream:
        runner = (_StreamProcess(stream_url) if process else _StreamThread()).start()
    latencies: list[float] = []
    actors: dict[str, int] = {}
    unclosed = 0
    try:
        for _ in range(math.ceil(closes / len(names))):
            _, failures = positions_open(names=names, control=control)
            for failure in failures:  # sizing may refuse a symbol: the others carry on
                logging.getLogger(__name__).warning("could not open %s", failure)
            positions = list(
                Position.objects.filter(status=Position.Status.OPEN).select_related("symbol")
            )
            random.shuffle(positions)
            for position in positions:
                time.sleep(random.uniform(0, 2 * spacing))
                control.set_price(position.symbol.name, str(_below_stop(position)))
            unclosed += _wait_closed(positions, timeout=3 * GUARD_SECONDS)
            for position in positions:
                latency, actor = _close_latency(position)
                if latency is not None:
                    latencies.append(latency)
                    actors[actor] = actors.get(actor, 0) + 1
    finally:
        if runner is not None:
            runner.stop()
        guard.stop()
    latencies.sort()
    where = "its own process" if process else "a thread of the bench"
    return LatencyRow(
        mode=f"stream on ({where}; guard every 5 s as backstop)"
        if stream
        else "stream off (guard only)",
        closes=len(latencies),
        p50_ms=statistics.median(latencies),
        p99_ms=latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)],
        max_ms=latencies[-1],
        by_actor=actors,
        unclosed=unclosed,
    )


def _below_stop(position) -> Any:
    """Two ticks through the long's stop: the stop fires at once."""
    return position.stop_loss_price - 2 * position.symbol.tick_size


def _wait_closed(positions: list, *, timeout: float) -> int:
    from trading.models import Position

    ids = [p.id for p in positions]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = Position.objects.filter(id__in=ids).exclude(status=Position.Status.CLOSED).count()
        if not left:
            return 0
        time.sleep(0.05)
    return Position.objects.filter(id__in=ids).exclude(status=Position.Status.CLOSED).count()


def _close_latency(position) -> tuple[float | None, str]:
    """ms from the exit fill's exchange time to the close event's row; and who recorded it."""
    from trading.models import TradeEvent

    event = TradeEvent.objects.filter(position=position, kind=TradeEvent.Kind.CLOSED).first()
    exit_fill = position.fills.filter(side="SELL").order_by("-time").first()
    if event is None or exit_fill is None:
        return None, ""
    return (event.created_at - exit_fill.time).total_seconds() * 1000, event.actor


class _GuardLoop:
    """The guard every 5 s on its own thread, as Beat schedules it."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-guard", daemon=True)

    def start(self) -> _GuardLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        from django.db import close_old_connections

        from trading.guard import guard_pass

        if self._stop.wait(random.uniform(0, GUARD_SECONDS)):
            return  # the first pass at a random phase, then every 5 s
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                guard_pass(gateway=env.fast_gateway())
            except Exception as e:  # a failed pass is the next pass's business, as in Celery
                logging.getLogger(__name__).warning("guard pass failed: %s", e)
            self._stop.wait(max(0.0, GUARD_SECONDS - (time.monotonic() - started)))
        close_old_connections()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class _StreamThread:
    """The stream process's runner on a thread with its own event loop."""

    def __init__(self) -> None:
        from exchange.stream import user_data_stream_factory
        from trading.stream_runner import StreamRunner

        self.runner = StreamRunner(
            stream_factory=user_data_stream_factory(), gateway_factory=env.fast_gateway
        )
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="bench-stream", daemon=True)
        self._ready = threading.Event()

    def start(self) -> _StreamThread:
        self._thread.start()
        self._ready.wait(10)
        deadline = time.monotonic() + 30
        while not self.runner.connected.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError("the stream did not connect")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        self._ready.set()
        self._loop.run_until_complete(self.runner.run(self._stop))

    def stop(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


class _StreamProcess:
    """The stream process as deployed (``manage.py stream``), on the bench's database and
    paper exchange: no thread of the bench competes with it for the interpreter."""

    def __init__(self, stream_url: str) -> None:
        self.stream_url = stream_url
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> _StreamProcess:
        from django.conf import settings

        from trading.models import StreamState

        StreamState.objects.all().delete()
        env = os.environ | {
            "PAPER_STREAM_URL": self.stream_url,
            "PAPER_EXCHANGE_URL": settings.PAPER_EXCHANGE_URL,
            "EXCHANGE_WEIGHT_BUDGET_1M": str(10**9),
            "LOG_LEVEL": "WARNING",
        }
        self._process = subprocess.Popen(
            [sys.executable, "manage.py", "stream"],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=LOG.open("ab"),
        )
        deadline = time.monotonic() + 60
        while not StreamState.objects.filter(connected=True).exists():
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.stop()
                raise RuntimeError("the stream process did not connect")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# --------------------------------------------------------------------------- weight
@dataclass
class WeightRow:
    symbols: int  # enabled symbols
    positions: int  # open positions, one per symbol
    passes: int  # consecutive passes measured: WEIGHT_WINDOW_MINUTES at one pass every 5 s
    weight: int  # their total weight, as the exchange counted it
    steady_weight: int  # a pass that neither sweeps nor reads the balance
    steady_requests: int
    sweep_weight: int  # the sweeping pass (every order of every symbol)
    errors: list[str] = field(default_factory=list)

    @property
    def per_minute(self) -> float:
        return self.weight / (self.passes * GUARD_SECONDS / 60)


WEIGHT_WINDOW_MINUTES = 5  # one sweep period: every cadence of the guard is in the window
POSITION_COUNTS = (1, 10, 50)


def weight_measure(*, control: Any) -> list[WeightRow]:
    """The real guard's passes, for 2, 20 and 50 enabled symbols and 1, 10 and 50 open positions
    (and as many as symbols): WEIGHT_WINDOW_MINUTES of passes back to back, the guard's clock
    for its sweep and balance cadences moved 5 s per pass (see ``_clock_advance``)."""
    from bench.measure import positions_open
    from trading.models import Position, Symbol

    rows = []
    for count in SYMBOL_COUNTS:
        env.book_clear(reason="bench: the exchange is reset")
        control.reset()
        control.configure(weight_limit_1m=10**9, orders_10s=10**9, orders_1m=10**9)
        control.set_balance("USDT", "1000000")
        names = _symbol_names(count)
        Symbol.objects.exclude(name__in=names).update(enabled=False)
        Symbol.objects.filter(name__in=names).update(enabled=True)
        for positions in sorted({n for n in POSITION_COUNTS if n <= count} | {count}):
            have = Position.objects.filter(status=Position.Status.OPEN).count()
            _, failures = positions_open(names=names[have:positions], control=control)
            for failure in failures:
                logging.getLogger(__name__).warning("could not open %s", failure)
            rows.append(_guard_window(symbols=count, control=control))
    return rows


def _guard_window(*, symbols: int, control: Any) -> WeightRow:
    from core.models import Lease
    from trading.guard import CADENCE_LEASES, guard_pass
    from trading.models import Position

    guard_pass(gateway=env.fast_gateway())  # settles what the openings left (exits, books)
    Lease.objects.filter(name__in=CADENCE_LEASES).delete()  # the window starts with a sweep
    passes = WEIGHT_WINDOW_MINUTES * 60 / GUARD_SECONDS
    weights: list[int] = []
    requests: list[int] = []
    errors: list[str] = []
    previous = time.monotonic()
    while len(weights) < passes:
        _clear_of_minute_edge()
        # Exactly GUARD_SECONDS between two passes on the guard's clock: what real time did not
        # pass is added to it.
        _clock_advance(seconds=max(0.0, GUARD_SECONDS - (time.monotonic() - previous)))
        previous = time.monotonic()
        minute = int(time.time() // 60)
        before = int(control.stats()["weight_1m"])
        report = guard_pass(gateway=env.fast_gateway())
        used = int(control.stats()["weight_1m"]) - before
        if int(time.time() // 60) != minute:
            raise RuntimeError("a guard pass straddled the exchange's minute: run again")
        if report.error:
            errors.append(report.error)
        weights.append(used)
        requests.append(report.requests)
    steady = min(range(len(weights)), key=lambda i: weights[i])
    return WeightRow(
        symbols=symbols,
        positions=Position.objects.filter(status=Position.Status.OPEN).count(),
        passes=len(weights),
        weight=sum(weights),
        steady_weight=weights[steady],
        steady_requests=requests[steady],
        sweep_weight=weights[0],
        errors=errors,
    )


def _clock_advance(*, seconds: float) -> None:
    """``seconds`` pass for the guard's cadences (sweep, balance): their due times, kept in the
    database, move that much closer. The exchange's own minute is real time, untouched."""
    from datetime import timedelta

    from django.db.models import F

    from core.models import Lease
    from trading.guard import CADENCE_LEASES

    Lease.objects.filter(name__in=CADENCE_LEASES).update(
        expires_at=F("expires_at") - timedelta(seconds=seconds)
    )


def _clear_of_minute_edge(margin: float = 3.0) -> None:
    """Wait for the next minute when the exchange's minute ends within ``margin`` seconds, so a
    pass's weight is read within one X-MBX-USED-WEIGHT-1M window."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


# --------------------------------------------------------------------------- report
def _report(
    *, engine: str, rows: list[LatencyRow], weights: list[WeightRow], batch: int, spacing: float
) -> list[str]:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# arena: the user data stream",
        "",
        f"Database {engine}; paper exchange, guard and order path in one process (the stream"
        f" runner too, unless it runs as its own); load average at the end {load} on"
        f" {os.cpu_count()} cores.",
    ]
    if rows:  # not with --weight-only
        lines += _latency_lines(rows=rows, batch=batch, spacing=spacing)
    return lines + _weight_lines(weights)


def _latency_lines(*, rows: list[LatencyRow], batch: int, spacing: float) -> list[str]:
    lines = [
        "",
        f"## Fill → close recorded ({batch} positions at a time; a stop hit every {spacing:g} s "
        "on average, at random moments)",
        "",
        "| run | closes | p50 ms | p99 ms | max ms | recorded by | not closed in 15 s |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        actors = ", ".join(f"{k} {v}" for k, v in sorted(row.by_actor.items()))
        lines.append(
            f"| {row.mode} | {row.closes} | {row.p50_ms:.0f} | {row.p99_ms:.0f} "
            f"| {row.max_ms:.0f} | {actors} | {row.unclosed} |"
        )
    return lines


def _weight_lines(weights: list[WeightRow]) -> list[str]:
    lines = [
        "",
        f"## Guard weight (the real guard: {WEIGHT_WINDOW_MINUTES} minutes of passes, one every "
        f"{GUARD_SECONDS:g} s; weight as the exchange counted it)",
        "",
        "| enabled symbols | open positions | weight / min | share of 2,400 | steady pass: "
        "requests | weight | sweeping pass: weight | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in weights:
        lines.append(
            f"| {w.symbols} | {w.positions} | {w.per_minute:.0f} "
            f"| {w.per_minute / WEIGHT_LIMIT:.1%} | {w.steady_requests} | {w.steady_weight} "
            f"| {w.sweep_weight} | {len(w.errors)} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
