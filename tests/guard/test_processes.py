"""Cases 6 and 7 of issue 11 with real processes: the guard runs as a process of its own
(``manage.py guard``, as in the Procfile and ``make run``) beside a worker that is SIGKILLed
right after its entry filled, or beside cycles holding the symbol's lock; the position on the
exchange is protected within the guard's bound either way, and an alert says it was not.

Every process shares a SQLite file and the paper exchange of this test process. The guard runs
every ``GUARD_INTERVAL`` seconds; the bound is three intervals (three passes) and the time of
one pass.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.exchange import PROTECTED, exchange_exit_types, exchange_quantity

ROOT = Path(__file__).resolve().parents[2]
GUARD_INTERVAL = 1.0
BOUND_SECONDS = 3 * GUARD_INTERVAL + 2.0
DEADLINE_SECONDS = 60


def _env(tmp_path: Path, paper_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="arena.settings.test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'arena.sqlite3'}",
        EXCHANGE="paper",
        PAPER_EXCHANGE_URL=paper_url,
        EXCHANGE_TIMEOUT_SECONDS="20",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = DEADLINE_SECONDS) -> float:
    """Poll until ``condition``; return when it became true (monotonic)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic()


def _alert_keys(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "arena.sqlite3") as db:
        return [row[0] for row in db.execute("select key from monitoring_alert")]


def _guard_passes(paper: Any) -> int:
    # Every pass reads the positions of all symbols (a per-symbol read names one: not counted
    # apart by the paper exchange, but the guard alone reads positions in these tests' waits).
    return int(paper.stats()["requests"].get("GET /fapi/v2/positionRisk", 0))


@pytest.fixture
def arena(paper: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The database set up, the guard process running; every process is stopped at the end."""
    paper.set_price("BTCUSDT", "100000")
    paper.set_balance("USDT", "1833.33")
    env = _env(tmp_path, paper.url)
    subprocess.run(
        [sys.executable, "-m", "tests.faults.worker", "setup"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    started: list[subprocess.Popen] = []

    def spawn(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        started.append(process)
        return process

    spawn("manage.py", "guard", "--quiet", "--interval", str(GUARD_INTERVAL))
    before = _guard_passes(paper)
    _wait_for(lambda: _guard_passes(paper) >= before + 2, "the guard process to run passes")
    try:
        yield {"spawn": spawn, "env": env}
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_guard_process_when_worker_killed_right_after_entry_filled_then_protected_within_bound(
    paper: Any, arena: dict[str, Any], tmp_path: Path
) -> None:
    # Arrange: the exchange fills the entry and holds its answer back; the worker waits for it
    paper.faults(kind="timeout", method="POST", path="/fapi/v1/order", seconds=5)
    worker = arena["spawn"]("-m", "tests.faults.worker", "cycle")

    # Act: the entry fills; the worker is SIGKILLed before it can place a stop
    filled_at = _wait_for(lambda: paper.stats()["orders_accepted"] == 1, "the entry to fill")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    protected_at = _wait_for(
        lambda: exchange_exit_types(paper, "BTCUSDT") == PROTECTED, "the position's exits"
    )

    # Assert: one position, exactly one stop and one target, within the bound, and said so
    assert worker.returncode == -signal.SIGKILL
    assert protected_at - filled_at <= BOUND_SECONDS, protected_at - filled_at
    assert exchange_quantity(paper, "BTCUSDT") == Decimal("0.011")
    passes = _guard_passes(paper)
    _wait_for(lambda: _guard_passes(paper) >= passes + 3, "three more guard passes")
    assert exchange_exit_types(paper, "BTCUSDT") == PROTECTED
    assert paper.stats()["orders_accepted"] == 3  # one entry, one SL, one TP
    keys = _alert_keys(tmp_path)
    assert "guard.exit_missing.BTCUSDT.SL" in keys, keys


@pytest.mark.django_db
def test_guard_process_when_cycles_hold_the_symbol_lock_then_stop_deleted_by_hand_is_replaced(
    paper: Any, arena: dict[str, Any], unthrottled_gateway: Any, tmp_path: Path
) -> None:
    # Arrange: a protected LONG; then a slow cycle holds BTCUSDT's lock (an LLM call of 60 s)
    cycle = arena["spawn"]("-m", "tests.faults.worker", "cycle")
    _wait_for(lambda: exchange_exit_types(paper, "BTCUSDT") == PROTECTED, "a protected entry")
    cycle.wait(timeout=60)
    holder = arena["spawn"]("-m", "tests.guard.holder", "BTCUSDT", "60")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    stop = next(o for o in paper.open_orders()["algo_orders"] if o["orderType"] == "STOP_MARKET")

    # Act: the stop-loss is cancelled by hand while the lock is held
    assert unthrottled_gateway.cancel_order(
        symbol="BTCUSDT", client_order_id=stop["clientAlgoId"], conditional=True
    )
    naked_at = time.monotonic()
    protected_at = _wait_for(
        lambda: exchange_exit_types(paper, "BTCUSDT") == PROTECTED, "the stop to be replaced"
    )

    # Assert: replaced within the bound although the lock is still held, and alerted
    assert holder.poll() is None, "the lock holder must still be holding"
    assert protected_at - naked_at <= BOUND_SECONDS, protected_at - naked_at
    assert "guard.exit_missing.BTCUSDT.SL" in _alert_keys(tmp_path)


def test_procfiles_when_read_then_guard_runs_as_a_process_of_its_own() -> None:
    # Case 7: the guard never waits for a worker slot behind trade cycles.
    for name, command in (("Procfile", "python manage.py guard"), ("Procfile.local", "guard")):
        lines = (ROOT / name).read_text().splitlines()
        guard_lines = [line for line in lines if line.startswith("guard:")]
        assert len(guard_lines) == 1 and command in guard_lines[0], (name, lines)
        assert "celery" not in guard_lines[0]
