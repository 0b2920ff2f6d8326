"""``make run``, Ctrl-C, ``make run``: the same account and positions, still protected, and a
normal stop prints no ERROR line.

Real processes: make, the runner, the paper exchange (replay feed), runserver and a Celery
worker with Beat, on free ports and a database, broker and paper state of the test's own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 180
STOP_SECONDS = 120

STATE_PROBE = """
import json
from trading.exchange import exchange_gateway
from trading.models import Position
gateway = exchange_gateway()
print(json.dumps({
    "wallet": str(gateway.fetch_balance().wallet),
    "positions": sorted(
        [p.symbol, p.side, str(p.quantity), str(p.entry_price)] for p in gateway.fetch_positions()
    ),
    "exits": sorted(
        [o.symbol, o.order_type, str(o.stop_price)]
        for o in gateway.fetch_open_conditional_orders()
    ),
    "database": sorted(
        [p.symbol.name, p.side, p.status, str(p.quantity)]
        for p in Position.objects.filter(status__in=Position.OPEN_STATUSES)
    ),
}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def arena_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL", "PAPER_EXCHANGE_URL", "MAKEFLAGS"}
    }
    paper_port = _free_port()
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_DIR=str(tmp_path / "broker"),
        PAPER_STATE=str(tmp_path / "paper-state.json"),
        WEB_PORT=str(_free_port()),
        PAPER_PORT=str(paper_port),
        PAPER_SPEED="1",  # a slow replay: the position must outlive the restart
        PYTHONUNBUFFERED="1",
        LLM_API_URL="",
        TELEGRAM_BOT_TOKEN="",
    )
    return env


def _manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    env = {**env, "PAPER_EXCHANGE_URL": f"http://127.0.0.1:{env['PAPER_PORT']}"}
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {args[0]}: {result.stdout}\n{result.stderr}"
    return result.stdout


def _state(env: dict[str, str]) -> dict[str, Any]:
    out = _manage(env, "shell", "--no-imports", "-c", STATE_PROBE)
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def _wait_for(predicate: Any, *, timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; output:\n{log.read_text(errors='replace')[-5000:]}")


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "run"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: our SIGINT plays the terminal's Ctrl-C
    )
    _wait_for(
        lambda: " ready." in log.read_text(errors="replace"),
        timeout=START_SECONDS,
        what="the worker to be ready",
        log=log,
    )
    return process


def _ctrl_c(process: subprocess.Popen[bytes], log: Path) -> str:
    """SIGINT to the whole foreground group, as a terminal sends it; the output of the stop."""
    before = len(log.read_text(errors="replace"))
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"make run did not stop:\n{log.read_text(errors='replace')[-5000:]}")
    return log.read_text(errors="replace")[before:]


def _exits_of(state: dict[str, Any], symbol: str) -> set[str]:
    return {order_type for name, order_type, _ in state["exits"] if name == symbol}


def test_make_run_when_interrupted_and_started_again_then_same_account_protected(
    arena_env: dict[str, str], tmp_path: Path
) -> None:
    env = arena_env
    _manage(env, "migrate", "--no-input")
    _manage(env, "bootstrap", "--replay-speed", "1")
    # Manual agents: only this test opens positions, so the account is the test's to compare.
    _manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        "from trading.models import Strategy; Strategy.objects.update(agent='manual')",
    )
    first_log = tmp_path / "first.log"
    first = _start(env, first_log)
    try:
        _manage(env, "run_cycle", "--symbol", "BTCUSDT", "--signal", "long")
        before = _wait_for(
            lambda: (s := _state(env))["positions"] and len(_exits_of(s, "BTCUSDT")) == 2 and s,
            timeout=60,
            what="a protected BTCUSDT position",
            log=first_log,
        )
    finally:
        stop_output = _ctrl_c(first, first_log)

    assert "ERROR" not in stop_output and "Traceback" not in stop_output, stop_output
    assert stop_output.index("worker stopped") < stop_output.index("stopping paper")
    assert (tmp_path / "paper-state.json").exists()

    second_log = tmp_path / "second.log"
    second = _start(env, second_log)
    try:
        after = _state(env)
        # The new worker compared the database with the resumed exchange.
        _wait_for(
            lambda: (
                "agree" in second_log.read_text(errors="replace")
                or "[Reconcile]" in second_log.read_text(errors="replace")
            ),
            timeout=60,
            what="the reconcile on worker start",
            log=second_log,
        )
        settled = _state(env)
    finally:
        second_stop = _ctrl_c(second, second_log)

    assert Decimal(after["wallet"]) == Decimal(before["wallet"])
    assert after["positions"] == before["positions"]
    assert after["exits"] == before["exits"]
    assert settled["exits"] == before["exits"]  # still protected, nothing re-placed or lost
    assert settled["database"] == before["database"]
    assert [row[:3] for row in before["database"]] == [["BTCUSDT", "LONG", "OPEN"]]
    assert "database and exchange agree" in second_log.read_text(errors="replace")
    assert "ERROR" not in second_stop and "Traceback" not in second_stop, second_stop
