"""A real Celery worker with embedded beat runs trade cycles against the paper exchange.

The worker is a subprocess with its own database (a temporary SQLite file, or a fresh PostgreSQL
database) and its own broker (kombu's filesystem transport in a temporary folder, or Redis); the
paper exchange serves from this process. Every wait is a bounded poll on state the worker writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")
WAIT_SECONDS = 120
CYCLE_SECONDS = 10  # the shortest interval a strategy accepts


@dataclass
class Stack:
    env: dict[str, str]
    paper: Any  # paper.testing.PaperControl
    log: Path


def _run(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return result.stdout


def _probe(stack: Stack, code: str, *, timeout: float = 60) -> dict[str, Any] | None:
    script = f"from tests.celery import probe\n{code}"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        check=False,
    )
    if result.returncode != 0:
        log = stack.log.read_text(errors="replace")[-6000:] if stack.log.exists() else ""
        pytest.fail(
            f"probe failed: {code}\nlast state: {result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}\nworker log tail:\n{log}"
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


@pytest.fixture
def paper_for_worker() -> Iterator[Any]:
    """A fresh paper exchange for the worker (fresh klines, flat account)."""
    from paper.testing import PaperControl, PaperExchangeServer

    with PaperExchangeServer(port=0, feed="static") as server:
        yield PaperControl(server.url), server.url


def _env(*, database_url: str, broker_dir: Path, redis_url: str, paper_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="arena.settings.test",
        DATABASE_URL=database_url,
        CELERY_BROKER_DIR=str(broker_dir),
        REDIS_URL=redis_url,
        EXCHANGE="paper",
        PAPER_EXCHANGE_URL=paper_url,
        LLM_API_URL="",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    """Start ``celery worker -B`` on all four queues; stopped (its process group) at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(stack: Stack) -> subprocess.Popen[bytes]:
        log = stack.log.open("wb")
        process = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "arena",
                "worker",
                "-B",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--queues",
                "default,guard,cycles,sentinel",
                "--concurrency",
                "2",
                "--hostname",
                f"arena-test-{uuid.uuid4().hex[:8]}@%h",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _stack(tmp_path: Path, paper: tuple[Any, str], *, database_url: str, redis_url: str) -> Stack:
    """The worker's environment: its database, its broker (Redis, or a folder of its own)."""
    control, url = paper
    return Stack(
        env=_env(
            database_url=database_url,
            broker_dir=tmp_path / "broker",
            redis_url=redis_url,
            paper_url=url,
        ),
        paper=control,
        log=tmp_path / "worker.log",
    )


def _scenario(stack: Stack, start_worker: Any) -> None:
    _run(stack.env, "migrate", "--no-input")
    # loaddata commits, so the post-commit hook creates the cycle schedules; the command makes
    # sure of it either way.
    _run(stack.env, "loaddata", "defaults")
    _run(stack.env, "sync_schedules")
    _probe(
        stack,
        "probe.setup(manual=['BTCUSDT', 'BNBUSDT'], "
        f"interval_seconds={CYCLE_SECONDS}, disabled=['BNBUSDT'])\n"
        "probe.signal(symbol='BTCUSDT', action='LONG')",
    )
    start_worker(stack)

    # A cycle of BTCUSDT opens the long, and its take-profit and stop-loss are on the exchange.
    state = _probe(
        stack,
        f"probe.wait(condition='open', symbols={{'BTCUSDT': 'LONG'}}, timeout={WAIT_SECONDS})",
        timeout=WAIT_SECONDS,
    )
    assert state["schedules"]["cycle: BTCUSDT"] == {
        "enabled": True,
        "every": CYCLE_SECONDS,
        "queue": "cycles",
    }
    assert state["schedules"]["cycle: BNBUSDT"]["enabled"] is False
    assert [p["symbol"] for p in stack.paper.positions()] == ["BTCUSDT"]
    algo = [o for o in stack.paper.open_orders()["algo_orders"] if o["symbol"] == "BTCUSDT"]
    assert len(algo) == 2

    # Enabling BNBUSDT while the worker runs reschedules it without a restart.
    _probe(
        stack,
        "probe.set_enabled(symbol='BNBUSDT', enabled=True)\n"
        "probe.signal(symbol='BNBUSDT', action='SHORT')",
    )
    _probe(
        stack,
        f"probe.wait(condition='open', symbols={{'BNBUSDT': 'SHORT'}}, timeout={WAIT_SECONDS})",
        timeout=WAIT_SECONDS,
    )

    # FLAT closes both; the exchange ends flat with no exit orders left behind.
    _probe(
        stack,
        "probe.signal(symbol='BTCUSDT', action='FLAT')\n"
        "probe.signal(symbol='BNBUSDT', action='FLAT')",
    )
    state = _probe(
        stack,
        "probe.wait(condition='closed', symbols={'BTCUSDT': '', 'BNBUSDT': ''}, "
        f"timeout={WAIT_SECONDS})",
        timeout=WAIT_SECONDS,
    )
    assert {p["close_reason"] for p in state["positions"]} == {"SIGNAL"}
    assert stack.paper.positions() == []
    assert stack.paper.open_orders()["algo_orders"] == []
    # Disabled symbols never got a cycle.
    assert set(state["decisions"]) == {"BTCUSDT", "BNBUSDT"}


def test_worker_when_embedded_broker_then_cycles_open_and_close_protected_positions(
    tmp_path: Path, paper_for_worker: Any, worker_factory: Any
) -> None:
    stack = _stack(
        tmp_path,
        paper_for_worker,
        database_url=f"sqlite:///{tmp_path / 'arena.sqlite3'}",
        redis_url="",
    )

    _scenario(stack, worker_factory)


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the server DATABASE_URL names; dropped afterwards."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    name = f"arena_celery_{uuid.uuid4().hex[:8]}"
    params = {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    try:
        yield f"postgres://{auth}@{params['host']}:{params['port']}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@pytest.mark.redis
def test_worker_when_redis_broker_and_postgres_then_cycles_open_and_close_protected_positions(
    tmp_path: Path, paper_for_worker: Any, worker_factory: Any, postgres_database: str
) -> None:
    stack = _stack(
        tmp_path,
        paper_for_worker,
        database_url=postgres_database,
        redis_url=os.environ["REDIS_URL"],
    )

    _scenario(stack, worker_factory)


REPLAY_SPEED = 600


@pytest.fixture
def replaying_paper() -> Iterator[Any]:
    """A paper exchange replaying the shipped candles at 600x (ten one-minute candles a second)."""
    from paper.testing import PaperControl, PaperExchangeServer

    with PaperExchangeServer(port=0, feed="replay", speed=REPLAY_SPEED) as server:
        yield PaperControl(server.url), server.url


def _replay_scenario(stack: Stack, start_worker: Any) -> None:
    _run(stack.env, "migrate", "--no-input")
    # The local arena's set-up: default rules (rule-based agent), cycles tuned to the replay.
    _run(stack.env, "bootstrap", "--replay-speed", str(REPLAY_SPEED))
    start_worker(stack)

    # The rule-based agent opens positions on the replayed market; each carries its TP and SL,
    # and one of them is closed by its TP or SL on the exchange, recorded by the guard.
    state = _probe(
        stack,
        f"probe.wait(condition='closed_by_exit', symbols={{'*': ''}}, timeout={WAIT_SECONDS})",
        timeout=WAIT_SECONDS,
    )
    assert state["decisions"], "no cycle ran"
    assert set(state["decisions"]) <= {"BTCUSDT", "BNBUSDT"}  # only the enabled symbols
    rejections = stack.paper.stats()["rejections"]
    assert not {c for c in rejections if c in ("-1111", "-4164", "-4005", "-4003")}, rejections


def test_worker_when_embedded_broker_and_replay_then_rule_agent_trades_with_tp_and_sl(
    tmp_path: Path, replaying_paper: Any, worker_factory: Any
) -> None:
    stack = _stack(
        tmp_path,
        replaying_paper,
        database_url=f"sqlite:///{tmp_path / 'arena.sqlite3'}",
        redis_url="",
    )

    _replay_scenario(stack, worker_factory)


@pytest.mark.postgres
@pytest.mark.redis
def test_worker_when_redis_broker_and_replay_then_rule_agent_trades_with_tp_and_sl(
    tmp_path: Path, replaying_paper: Any, worker_factory: Any, postgres_database: str
) -> None:
    stack = _stack(
        tmp_path, replaying_paper, database_url=postgres_database, redis_url=os.environ["REDIS_URL"]
    )

    _replay_scenario(stack, worker_factory)
