"""The kill switch wins over a cycle in flight: ``emergency_close --yes`` started while a trade
cycle waits on a slow exchange request, in two real processes on one SQLite file.

- slow read: the cycle is past its first kill-switch check and waits on the symbol's state; the
  emergency halts trading meanwhile. The entry is checked again right before it is sent, so it
  never is: the exchange accepts nothing, the command's "Nothing was open" is true.
- entry in flight: the entry request has left when the emergency starts. The emergency waits
  for its answer and closes what it opened; the cycle, whose lease was taken over, places no
  exits. The exchange ends flat with no order left, and the command says "closed".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.exchange import exchange_quantity

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 30


def _env(tmp_path: Path, paper_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="arena.settings.test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        EXCHANGE="paper",
        PAPER_EXCHANGE_URL=paper_url,
        EXCHANGE_TIMEOUT_SECONDS="20",
        EXCHANGE_RETRY_MAX_SECONDS="5",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _requests(paper: Any, key: str) -> int:
    return int(paper.stats()["requests"].get(key, 0))


def _start_cycle(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.worker", "cycle"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _emergency(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "emergency_close", "--yes", "--reason", "drill"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _cycle_result(worker: subprocess.Popen) -> str:
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])["cycle"]


@pytest.fixture
def env(paper: Any, tmp_path: Path) -> dict[str, str]:
    paper.set_price("BTCUSDT", "100000")
    paper.set_balance("USDT", "1833.33")
    env = _env(tmp_path, paper.url)
    setup = subprocess.run(
        [sys.executable, "-m", "tests.faults.worker", "setup"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr[-3000:]
    return env


def test_emergency_when_cycle_waits_on_a_slow_read_then_no_entry_is_ever_sent(
    paper: Any, env: dict[str, str]
) -> None:
    # The symbol's state read while the cycle decides answers late, older than an entry may
    # use, so the entry path reads it again past its first check; that read waits long enough
    # for the emergency command to start (Django set-up included: over 10 s on a loaded 2-core
    # machine) and halt, under the client's 20 s timeout.
    path = "/fapi/v2/positionRisk"
    paper.faults(kind="latency", method="GET", path=path, seconds=2.5, count=1)
    paper.faults(kind="latency", method="GET", path=path, seconds=18, count=1)
    worker = _start_cycle(env)
    try:
        _wait_for(
            lambda: _requests(paper, f"GET {path}") >= 2,
            "the cycle to wait on the symbol's state",
        )

        emergency = _emergency(env)
        in_flight = worker.poll() is None  # the emergency ran while the cycle was waiting
        cycle = _cycle_result(worker)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)

    assert in_flight
    assert emergency.returncode == 0, emergency.stdout + emergency.stderr[-3000:]
    assert "Nothing was open." in emergency.stdout
    assert "refused" in cycle and "halted" in cycle, cycle
    assert paper.stats()["orders_accepted"] == 0
    assert _requests(paper, "POST /fapi/v1/order") == 0
    assert paper.positions() == []


def test_emergency_when_entry_in_flight_then_it_is_closed_and_nothing_is_left(
    paper: Any, env: dict[str, str]
) -> None:
    # Long enough for the emergency command to start (Django set-up included) and take over.
    paper.faults(kind="latency", method="POST", path="/fapi/v1/order", seconds=10)
    worker = _start_cycle(env)
    try:
        _wait_for(
            lambda: _requests(paper, "POST /fapi/v1/order") >= 1,
            "the entry to be on its way",
        )

        emergency = _emergency(env)
        cycle = _cycle_result(worker)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)

    assert emergency.returncode == 0, emergency.stdout + emergency.stderr[-3000:]
    assert "BTCUSDT: closed" in emergency.stdout, emergency.stdout
    assert "Flat: nothing is open on the exchange." in emergency.stdout
    assert "taken over" in cycle, cycle
    assert exchange_quantity(paper, "BTCUSDT") == 0
    orders = paper.open_orders()
    assert orders == {"orders": [], "algo_orders": []}, orders
    assert paper.stats()["orders_accepted"] == 2  # the entry and its close: no exit placed
