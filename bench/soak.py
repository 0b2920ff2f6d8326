"""The fault soak: ``python -m bench.soak [--seconds 600] [--output var/soak.md]``.

The arena runs as it does in production, as processes of their own (the guard process every
5 s, and a trading process cycling every symbol with random signals), on a paper exchange
replaying the shipped candles. Random faults land on every endpoint the whole time (bursts of
503s, 429s with Retry-After, added latency, answers lost after the exchange acted, answers held
past the client's timeout) and random processes are SIGKILLed and restarted.

A sampler reads the exchange once a second (positions and open conditional orders, through the
paper exchange's control API, which faults never touch) and times every stretch a position
spends without both a stop-loss and a take-profit of the side that closes it. The target: never
longer than one guard interval plus one entry round trip (the client timeout, the longest one
round trip may take).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "var" / "soak.md"
ENDPOINTS = (
    ("POST", "/fapi/v1/order"),
    ("POST", "/fapi/v1/algoOrder"),
    ("GET", "/fapi/v2/positionRisk"),
    ("GET", "/fapi/v1/openOrders"),
    ("GET", "/fapi/v1/openAlgoOrders"),
    ("GET", "/fapi/v2/account"),
    ("GET", "/fapi/v1/premiumIndex"),
    ("GET", "/fapi/v1/order"),
    ("GET", "/fapi/v1/algoOrder"),
    ("DELETE", "/fapi/v1/algoOrder"),
    ("GET", "/fapi/v1/userTrades"),
    ("GET", "/fapi/v1/symbolConfig"),
)
EXITS = {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
MAX_PENDING_FAULTS = 2


@dataclass
class SoakResult:
    """What the sampler saw: every stretch of a position without both exits, in seconds."""

    seconds: float
    guard_interval: float
    client_timeout: float
    samples: int = 0
    positions_seen: int = 0
    naked: list[float] = field(default_factory=list)
    # The longest stretches: (seconds, symbol, when it started, UTC), for reading the logs.
    worst: list[tuple[float, str, str]] = field(default_factory=list)
    faults: int = 0
    kills: dict[str, int] = field(default_factory=dict)

    @property
    def target(self) -> float:
        return self.guard_interval + self.client_timeout

    @property
    def max_naked(self) -> float:
        return max(self.naked, default=0.0)

    @property
    def p99_naked(self) -> float:
        if not self.naked:
            return 0.0
        ordered = sorted(self.naked)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    def lines(self) -> list[str]:
        kills = ", ".join(f"{name} ×{n}" for name, n in sorted(self.kills.items())) or "none"
        return [
            f"## Fault soak: {self.seconds:.0f} s of random faults and process kills",
            "",
            "| positions seen | samples (1/s) | faults injected | processes killed "
            "| stretches without both exits | longest, s | p99, s | target, s |",
            "|---:|---:|---:|---|---:|---:|---:|---:|",
            f"| {self.positions_seen} | {self.samples} | {self.faults} | {kills} | "
            f"{len(self.naked)} | {self.max_naked:.1f} | {self.p99_naked:.1f} | "
            f"{self.target:.1f} |",
            "",
            f"Target: one guard interval ({self.guard_interval:g} s) plus one entry round trip "
            f"(the client timeout, {self.client_timeout:g} s). A stretch is timed from the first "
            "sample that saw the position without both exits to the first that saw it protected "
            "or flat, so each figure is within a second of the truth.",
            "",
            "Longest stretches: "
            + (
                ", ".join(f"{sym} {sec:.0f} s from {at}" for sec, sym, at in self.worst[:3])
                or "none"
            )
            + " (UTC).",
            "",
        ]


def random_fault(rng: random.Random, *, client_timeout: float) -> dict[str, Any]:
    """One fault on a random endpoint (the kinds of paper/faults.py)."""
    method, path = rng.choice(ENDPOINTS)
    kind = rng.choices(
        ["error", "rate_limit", "latency", "drop", "timeout"], weights=[4, 1, 3, 2, 1]
    )[0]
    spec: dict[str, Any] = {"kind": kind, "method": method, "path": path}
    if kind == "error":
        spec.update(status=503, count=rng.randint(2, 6))  # a burst
    elif kind == "rate_limit":
        spec.update(retry_after=rng.randint(1, 2))
    elif kind == "latency":
        spec.update(seconds=round(rng.uniform(0.3, 1.5), 2), count=rng.randint(1, 3))
    elif kind == "timeout":
        spec.update(seconds=client_timeout + 1)
    return spec


def unprotected(control: Any) -> tuple[set[str], set[str]]:
    """(symbols with a position, those of them without both exits of the closing side)."""
    held = {
        row["symbol"]: Decimal(row["positionAmt"])
        for row in control.positions()
        if Decimal(row["positionAmt"]) != 0
    }
    algos = control.open_orders()["algo_orders"]
    naked = set()
    for symbol, amount in held.items():
        closing = "SELL" if amount > 0 else "BUY"
        types = {
            a["orderType"]
            for a in algos
            if a["symbol"] == symbol
            and a["side"] == closing
            and (a.get("closePosition") or a.get("reduceOnly"))
        }
        if not types >= EXITS:
            naked.add(symbol)
    return set(held), naked


class _Processes:
    """The arena's processes, each restartable after a SIGKILL; output appended to log files."""

    def __init__(self, *, env: dict[str, str], workdir: Path, commands: dict[str, list[str]]):
        self.env, self.workdir, self.commands = env, workdir, commands
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        log = open(self.workdir / f"{name}.log", "a")  # noqa: SIM115 - kept by the child
        self.running[name] = subprocess.Popen(
            [sys.executable, *self.commands[name]],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.running.values():
            process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.running.clear()


def soak_run(
    *,
    seconds: float,
    workdir: Path,
    guard_interval: float = 5.0,
    client_timeout: float = 2.0,
    speed: float = 60.0,
    seed: int = 0,
    fault_every: tuple[float, float] = (1.0, 5.0),
    kill_every: tuple[float, float] = (15.0, 40.0),
    database_url: str | None = None,
) -> SoakResult:
    """Run the soak for ``seconds`` and return what the sampler saw (see the module docstring).

    The database is ``database_url`` (a throwaway one: see ``bench.env``), else a SQLite file in
    ``workdir``; process logs go to ``workdir``.
    """
    from paper.testing import PaperControl, PaperExchangeServer

    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    result = SoakResult(
        seconds=seconds, guard_interval=guard_interval, client_timeout=client_timeout
    )
    with PaperExchangeServer(port=0, feed="replay", speed=speed) as server:
        control = PaperControl(server.url)
        control.set_balance("USDT", "100000")
        env = dict(os.environ)
        env["DATABASE_URL"] = database_url or f"sqlite:///{workdir / 'soak.sqlite3'}"
        env.update(
            DJANGO_SETTINGS_MODULE="arena.settings.test",
            EXCHANGE="paper",
            PAPER_EXCHANGE_URL=server.url,
            EXCHANGE_TIMEOUT_SECONDS=str(client_timeout),
            PYTHONUNBUFFERED="1",
        )
        subprocess.run(
            [sys.executable, "-m", "bench.soak_worker", "setup"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        processes = _Processes(
            env=env,
            workdir=workdir,
            commands={
                "guard": ["manage.py", "guard", "--quiet", "--interval", str(guard_interval)],
                "cycles": ["-m", "bench.soak_worker", "cycles", "--seed", str(seed)],
            },
        )
        for name in processes.commands:
            processes.start(name)
        try:
            _sample(
                result=result,
                control=control,
                processes=processes,
                rng=rng,
                fault_every=fault_every,
                kill_every=kill_every,
            )
        finally:
            control.clear_faults()
            processes.stop_all()
    return result


def _sample(
    *,
    result: SoakResult,
    control: Any,
    processes: _Processes,
    rng: random.Random,
    fault_every: tuple[float, float],
    kill_every: tuple[float, float],
) -> None:
    start = time.monotonic()
    deadline = start + result.seconds
    next_fault = start + rng.uniform(*fault_every)
    next_kill = start + rng.uniform(*kill_every)
    restart_at: dict[str, float] = {}
    naked_since: dict[str, float] = {}
    held_before: set[str] = set()
    next_sample = start
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= next_fault:
            # Faults are used up by requests; a few pending at most (the oldest, on an endpoint
            # nobody called since, are dropped), so the exchange misbehaves often but is not
            # simply down (that is the sentinel's case).
            if len(control._call("GET", "faults")["faults"]) >= MAX_PENDING_FAULTS:
                control.clear_faults()
            control.faults(**random_fault(rng, client_timeout=result.client_timeout))
            result.faults += 1
            next_fault = now + rng.uniform(*fault_every)
        if now >= next_kill:
            name = rng.choice(sorted(processes.running))
            processes.kill(name)
            result.kills[name] = result.kills.get(name, 0) + 1
            restart_at[name] = now + rng.uniform(0.5, 2.0)
            next_kill = now + rng.uniform(*kill_every)
        for name, at in list(restart_at.items()):
            if now >= at:
                processes.start(name)
                del restart_at[name]
        if now >= next_sample:
            held, naked = unprotected(control)
            result.samples += 1
            result.positions_seen += len(held - held_before)
            held_before = held
            for symbol in naked:
                naked_since.setdefault(symbol, now)
            for symbol in list(naked_since):
                if symbol not in naked:
                    _stretch_end(result, symbol, naked_since.pop(symbol), now)
            next_sample += 1.0
        time.sleep(0.05)
    # Still naked at the end: counted as far as seen.
    end = time.monotonic()
    for symbol, since in naked_since.items():
        _stretch_end(result, symbol, since, end)


def _stretch_end(result: SoakResult, symbol: str, since: float, now: float) -> None:
    seconds = now - since
    result.naked.append(seconds)
    started = datetime.now(tz=UTC) - timedelta(seconds=time.monotonic() - since)
    result.worst.append((seconds, symbol, f"{started:%H:%M:%S}"))
    result.worst.sort(reverse=True)
    del result.worst[5:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--guard-interval", type=float, default=5.0)
    parser.add_argument("--speed", type=float, default=60.0, help="replay speed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    from bench import env

    workdir = args.output.parent / "soak"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings.test")
    with env.bench_database():
        import django

        django.setup()  # only for closing the throwaway database's connections at the end
        result = soak_run(
            seconds=args.seconds,
            workdir=workdir,
            guard_interval=args.guard_interval,
            speed=args.speed,
            seed=args.seed,
            database_url=os.environ["DATABASE_URL"],
        )
    text = "\n".join(result.lines())
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output}; process logs in {workdir}", file=sys.stderr)
    return 0 if result.max_naked <= result.target else 1


if __name__ == "__main__":
    sys.exit(main())
