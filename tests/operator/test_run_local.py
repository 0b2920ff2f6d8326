"""``make run``'s process runner: Ctrl-C stops the processes last-first, each one waited for;
one process exiting stops the others with its code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A process that says when it is up, and on SIGTERM takes a moment to finish its work.
SLOW_STOPPER = (
    f'{sys.executable} -u -c "import signal, sys, time; '
    "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.5), print('{name} done'), "
    "sys.exit(0))); print('{name} up'); [time.sleep(0.05) for _ in iter(int, 1)]\""
)


def _run(procfile: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.run_local", str(procfile), "--stop-timeout", "20"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _read_until(process: subprocess.Popen[str], marker: str, seen: list[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip())
        if marker in line:
            return
    pytest.fail(f"{marker!r} not seen:\n" + "\n".join(seen))


def _index(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def test_runner_when_ctrl_c_then_stops_last_first_each_waited_for(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"exchange: {SLOW_STOPPER.format(name='exchange')}\n"
        f"worker: {SLOW_STOPPER.format(name='worker')}\n"
    )
    runner = _run(procfile)
    seen: list[str] = []
    _read_until(runner, "worker up", seen)
    if not any("exchange up" in line for line in seen):
        _read_until(runner, "exchange up", seen)

    os.killpg(runner.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole group
    out, _ = runner.communicate(timeout=60)
    lines = seen + out.splitlines()

    assert runner.returncode == 0
    # Only the runner got the Ctrl-C: each child finished its work on the runner's SIGTERM.
    assert _index(lines, "worker done") < _index(lines, "worker stopped (code 0)")
    assert _index(lines, "worker stopped (code 0)") < _index(lines, "stopping exchange")
    assert _index(lines, "exchange done") < _index(lines, "exchange stopped (code 0)")
    assert "KeyboardInterrupt" not in out


def test_runner_when_one_process_exits_then_others_stopped_and_its_code_returned(
    tmp_path: Path,
) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"exchange: {SLOW_STOPPER.format(name='exchange')}\n"
        f'broken: {sys.executable} -c "import sys; sys.exit(3)"\n'
    )
    runner = _run(procfile)

    out, _ = runner.communicate(timeout=60)

    assert runner.returncode == 3
    assert "broken exited with code 3" in out and "exchange done" in out
