"""``make run``, Ctrl-C, ``make run``: the same account and positions, still protected, and a
normal stop prints no ERROR line.

Real processes: make, the runner, the paper exchange (replay feed), runserver and a Celery
worker with Beat, on free ports and a database, broker and paper state of the test's own.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.operator.arena_process import (
    arena_env_for,
    ctrl_c,
    exchange_state,
    manage,
    start,
    wait_for,
)


@pytest.fixture
def arena_env(tmp_path: Path) -> dict[str, str]:
    return arena_env_for(tmp_path, speed=1)  # a slow replay: the position outlives the restart


def _exits_of(state: dict[str, Any], symbol: str) -> set[str]:
    return {order_type for name, order_type, _ in state["exits"] if name == symbol}


def test_make_run_when_interrupted_and_started_again_then_same_account_protected(
    arena_env: dict[str, str], tmp_path: Path
) -> None:
    env = arena_env
    manage(env, "migrate", "--no-input")
    manage(env, "bootstrap", "--replay-speed", "1")
    # Manual agents: only this test opens positions, so the account is the test's to compare.
    manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        "from trading.models import Strategy; Strategy.objects.update(agent='manual')",
    )
    first_log = tmp_path / "first.log"
    first = start(env, first_log)
    try:
        manage(env, "run_cycle", "--symbol", "BTCUSDT", "--signal", "long")
        before = wait_for(
            lambda: (
                (s := exchange_state(env))["positions"] and len(_exits_of(s, "BTCUSDT")) == 2 and s
            ),
            timeout=60,
            what="a protected BTCUSDT position",
            log=first_log,
        )
    finally:
        stop_output = ctrl_c(first, first_log)

    assert "ERROR" not in stop_output and "Traceback" not in stop_output, stop_output
    assert stop_output.index("worker stopped") < stop_output.index("stopping paper")
    assert (tmp_path / "paper-state.json").exists()

    second_log = tmp_path / "second.log"
    second = start(env, second_log)
    try:
        after = exchange_state(env)
        # The new worker compared the database with the resumed exchange.
        wait_for(
            lambda: (
                "agree" in second_log.read_text(errors="replace")
                or "[Reconcile]" in second_log.read_text(errors="replace")
            ),
            timeout=60,
            what="the reconcile on worker start",
            log=second_log,
        )
        settled = exchange_state(env)
    finally:
        second_stop = ctrl_c(second, second_log)

    assert Decimal(after["wallet"]) == Decimal(before["wallet"])
    assert after["positions"] == before["positions"]
    assert after["exits"] == before["exits"]
    assert settled["exits"] == before["exits"]  # still protected, nothing re-placed or lost
    assert settled["database"] == before["database"]
    assert [row[:3] for row in before["database"]] == [["BTCUSDT", "LONG", "OPEN"]]
    assert "database and exchange agree" in second_log.read_text(errors="replace")
    assert "ERROR" not in second_stop and "Traceback" not in second_stop, second_stop
