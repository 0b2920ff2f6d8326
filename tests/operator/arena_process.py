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


# Not passed on to ``make run``: the test's own settings and services, and what the test settings
# put in the environment (DEBUG=0 would make the web process refuse to start without collected
# static files; ``make run`` is development, where the local settings turn DEBUG on).
NOT_INHERITED = {
    "DJANGO_SETTINGS_MODULE",
    "REDIS_URL",
    "PAPER_EXCHANGE_URL",
    "PAPER_STREAM_URL",
    "MAKEFLAGS",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arena_env_for(tmp_path: Path, *, speed: int) -> dict[str, str]:
    """The environment of a ``make run`` of the test's own (``speed``: PAPER_SPEED)."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    paper_port = free_port()
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_BROKER_DIR=str(tmp_path / "broker"),
        PAPER_STATE=str(tmp_path / "paper-state.json"),
        WEB_PORT=str(free_port()),
        PAPER_PORT=str(paper_port),
        # Not the Makefile's PAPER_PORT + 1: that port may be taken.
        PAPER_STREAM_PORT=str(free_port()),
        PAPER_SPEED=str(speed),
        PYTHONUNBUFFERED="1",
        LLM_API_URL="",
        TELEGRAM_BOT_TOKEN="",
    )
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    # The settings ``make run`` gives its processes: what they see, the probe sees.
    env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "arena.settings.local",
        "PAPER_EXCHANGE_URL": f"http://127.0.0.1:{env['PAPER_PORT']}",
    }
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


def wait_for(
    predicate: Any,
    *,
    timeout: float,
    what: str,
    log: Path,
    process: subprocess.Popen[bytes] | None = None,
) -> Any:
    """Poll ``predicate`` until true; fail at ``timeout``, or at once when ``process`` (make
    run) has exited: nothing it waits for can happen any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(
                f"make run exited (code {process.returncode}) while waiting for {what}; "
                f"output:\n{log.read_text(errors='replace')[-5000:]}"
            )
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
        process=process,
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
