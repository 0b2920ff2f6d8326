"""Run the whole arena as ``make run`` does, with real processes, for tests: its own free ports,
database, broker and paper state; Ctrl-C as a terminal sends it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 180
STOP_SECONDS = 120

STATE_PROBE = """
import json
from trading.gateway import exchange_gateway
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arena_env_for(tmp_path: Path, *, speed: int) -> dict[str, str]:
    """The environment of a ``make run`` of the test's own (``speed``: PAPER_SPEED)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL", "PAPER_EXCHANGE_URL", "MAKEFLAGS"}
    }
    paper_port = free_port()
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_DIR=str(tmp_path / "broker"),
        PAPER_STATE=str(tmp_path / "paper-state.json"),
        WEB_PORT=str(free_port()),
        PAPER_PORT=str(paper_port),
        PAPER_SPEED=str(speed),
        PYTHONUNBUFFERED="1",
        LLM_API_URL="",
        TELEGRAM_BOT_TOKEN="",
    )
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
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


def exchange_state(env: dict[str, str]) -> dict[str, Any]:
    out = manage(env, "shell", "--no-imports", "-c", STATE_PROBE)
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def wait_for(predicate: Any, *, timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; output:\n{log.read_text(errors='replace')[-5000:]}")


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "run"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: our SIGINT plays the terminal's Ctrl-C
    )
    wait_for(
        lambda: " ready." in log.read_text(errors="replace"),
        timeout=START_SECONDS,
        what="the worker to be ready",
        log=log,
    )
    return process


def ctrl_c(process: subprocess.Popen[bytes], log: Path) -> str:
    """SIGINT to the whole foreground group, as a terminal sends it; the output of the stop."""
    before = len(log.read_text(errors="replace"))
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"make run did not stop:\n{log.read_text(errors='replace')[-5000:]}")
    return log.read_text(errors="replace")[before:]
