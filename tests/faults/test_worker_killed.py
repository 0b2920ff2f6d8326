"""A worker SIGKILLed in the middle of a trade cycle, then a restarted worker recovers.

The worker is a subprocess on a SQLite file of its own and the paper exchange of this process. A
paper fault holds the request the test wants it to die in, so the kill lands at a known point:

- ``in flight``: the entry request reached the exchange, which has not handled it yet (it does,
  after the worker is dead);
- ``accepted``: the exchange filled the entry and holds the answer back;
- ``exits``: the entry is filled and answered, the stop-loss and take-profit are accepted and
  their answers held back.

After the restart there must be exactly one position, on the exchange and in the database, with
one stop-loss and one take-profit on the exchange.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.exchange import PROTECTED, exchange_exit_types, exchange_quantity

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 30


def _env(tmp_path: Path, paper_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="arena.settings.test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        EXCHANGE="paper",
        PAPER_EXCHANGE_URL=paper_url,
        # Longer than any fault here holds an answer: the worker is still waiting when killed.
        EXCHANGE_TIMEOUT_SECONDS="20",
        PYTHONUNBUFFERED="1",
    )
    return env


def _run(env: dict[str, str], command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tests.faults.worker", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"worker {command} failed:\n{result.stderr[-4000:]}"
    return result.stdout


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _posts(paper: Any, path: str) -> int:
    return int(paper.stats()["requests"].get(f"POST {path}", 0))


KILL_POINTS = {
    # fault spec, condition to kill at, orders the exchange ends up with before recovery
    "in flight": (
        {"kind": "latency", "method": "POST", "path": "/fapi/v1/order", "seconds": 2},
        lambda p: _posts(p, "/fapi/v1/order") == 1 and p.stats()["orders_accepted"] == 0,
        1,
    ),
    "accepted": (
        {"kind": "timeout", "method": "POST", "path": "/fapi/v1/order", "seconds": 5},
        lambda p: p.stats()["orders_accepted"] == 1,
        1,
    ),
    "exits": (
        {
            "kind": "timeout",
            "method": "POST",
            "path": "/fapi/v1/algoOrder",
            "seconds": 5,
            "count": 2,
        },
        lambda p: p.stats()["orders_accepted"] == 3,
        3,
    ),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_cycle_when_worker_killed_mid_cycle_then_after_restart_one_protected_position(
    paper: Any, tmp_path: Path, point: str
) -> None:
    fault, kill_when, accepted_at_kill = KILL_POINTS[point]
    paper.set_price("BTCUSDT", "100000")
    paper.set_balance("USDT", "1833.33")
    env = _env(tmp_path, paper.url)
    _run(env, "setup")
    paper.faults(**fault)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.worker", "cycle"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_for(lambda: kill_when(paper), f"the worker to reach '{point}'")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    _wait_for(
        lambda: paper.stats()["orders_accepted"] == accepted_at_kill,
        "the exchange to handle what was in flight",
    )
    paper.clear_faults()

    state = json.loads(_run(env, "recover").strip().splitlines()[-1])

    assert worker.returncode == -signal.SIGKILL
    assert exchange_quantity(paper, "BTCUSDT") == Decimal("0.011"), state
    assert exchange_exit_types(paper, "BTCUSDT") == PROTECTED, state
    live = [p for p in state["positions"] if p[2] in ("OPENING", "OPEN", "CLOSING")]
    assert live == [["BTCUSDT", "LONG", "OPEN", "0.011"]], state
    assert paper.stats()["orders_accepted"] == 3, state  # one entry, one SL, one TP
