"""A real Celery worker with embedded beat runs trade cycles against the paper exchange.

The worker is a subprocess with its own database (a temporary SQLite file, or a fresh PostgreSQL
database) and its own broker (kombu's filesystem transport in a temporary folder, or Redis); the
paper exchange serves from this process. Every wait is a bounded poll on state the worker writes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.celery_worker import Stack, _env, _probe, _run

WAIT_SECONDS = 120
CYCLE_SECONDS = 10  # the shortest interval a strategy accepts


@pytest.fixture
def paper_for_worker() -> Iterator[Any]:
    """A fresh paper exchange for the worker (fresh klines, flat account)."""
    from paper.testing import PaperControl, PaperExchangeServer

    with PaperExchangeServer(port=0, feed="static") as server:
        yield PaperControl(server.url), server.url


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
