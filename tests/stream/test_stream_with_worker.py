"""The arena with a real Celery worker and the stream process: a position opened by a trade
cycle is closed on the exchange by its stop, and the close is recorded from the stream's
events (the guard's schedule is off, so nothing else could record it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.celery_worker import ROOT, Stack, _env, _probe, _run

WAIT_SECONDS = 120


@pytest.fixture
def paper_with_stream() -> Iterator[tuple[Any, str, str]]:
    from paper.testing import PaperControl, PaperExchangeServer

    with PaperExchangeServer(port=0, feed="static") as server:
        yield PaperControl(server.url), server.url, server.stream_url


@pytest.fixture
def stream_process() -> Iterator[Any]:
    """Start ``manage.py stream``; stopped with SIGTERM (as honcho does) at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "stream"],
            cwd=ROOT,
            env=stack.env,
            stdout=log.open("wb"),
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
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_arena_when_worker_and_stream_run_then_stop_close_recorded_from_stream_events(
    tmp_path: Path,
    paper_with_stream: Any,
    worker_factory: Any,
    stream_process: Any,
) -> None:
    # Arrange: the worker's database, the manual agent on BTCUSDT, the guard's schedule off.
    control, url, stream_url = paper_with_stream
    env = _env(
        database_url=f"sqlite:///{tmp_path / 'arena.sqlite3'}",
        broker_dir=tmp_path / "broker",
        redis_url="",
        paper_url=url,
    )
    env["PAPER_STREAM_URL"] = stream_url
    stack = Stack(env=env, paper=control, log=tmp_path / "worker.log")
    _run(env, "migrate", "--no-input")
    _run(env, "loaddata", "defaults")
    _run(env, "sync_schedules")
    _probe(
        stack,
        "probe.setup(manual=['BTCUSDT', 'BNBUSDT'], interval_seconds=10, disabled=['BNBUSDT'])\n"
        "probe.signal(symbol='BTCUSDT', action='LONG')\n"
        "from tests.stream import worker_probe\n"
        "worker_probe.guard_off()",
    )
    stream_process(stack, tmp_path / "stream.log")
    worker_factory(stack)
    _probe(
        stack,
        "from tests.stream import worker_probe\nworker_probe.wait_stream_connected(timeout=60)",
    )
    _probe(
        stack,
        f"probe.wait(condition='open', symbols={{'BTCUSDT': 'LONG'}}, timeout={WAIT_SECONDS})",
        timeout=WAIT_SECONDS,
    )
    opened = _probe(
        stack, "from tests.stream import worker_probe\nworker_probe.position(symbol='BTCUSDT')"
    )

    # Act: the market falls through the stop.
    control.set_price("BTCUSDT", str(Decimal(opened["stop_loss"]) - 100))
    _probe(
        stack,
        "probe.wait(condition='closed_by_exit', symbols={'BTCUSDT': ''}, timeout=30)",
        timeout=30,
    )

    # Assert: recorded by the stream, with both fills and the exchange's PnL.
    closed = _probe(
        stack, "from tests.stream import worker_probe\nworker_probe.position(symbol='BTCUSDT')"
    )
    assert closed["close_reason"] == "SL"
    assert closed["close_actors"] == ["stream"], (tmp_path / "stream.log").read_text()[-3000:]
    assert len(closed["fills"]) == 2
    assert control.positions() == []
