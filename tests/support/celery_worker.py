"""A real Celery worker (and other ``manage.py`` processes) on a database and broker of its own,
against a paper exchange served from the test's process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")


@dataclass
class Stack:
    """What a worker under test runs on: its environment, its paper exchange, its log file."""

    env: dict[str, str]
    paper: Any  # paper.testing.PaperControl
    log: Path


def _run(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Run ``manage.py`` with ``env``; its stdout, or the test fails with its stderr."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return result.stdout


def _probe(stack: Stack, code: str, *, timeout: float = 60) -> dict[str, Any] | None:
    """Run ``code`` after ``from tests.celery import probe`` in ``manage.py shell`` on the
    worker's database; the last JSON line it printed."""
    script = f"from tests.celery import probe\n{code}"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        check=False,
    )
    if result.returncode != 0:
        log = stack.log.read_text(errors="replace")[-6000:] if stack.log.exists() else ""
        pytest.fail(
            f"probe failed: {code}\nlast state: {result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}\nworker log tail:\n{log}"
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def _env(*, database_url: str, broker_dir: Path, redis_url: str, paper_url: str) -> dict[str, str]:
    """The environment of a worker process: its database, broker, Redis and paper exchange."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="arena.settings.test",
        DATABASE_URL=database_url,
        CELERY_BROKER_DIR=str(broker_dir),
        REDIS_URL=redis_url,
        EXCHANGE="paper",
        PAPER_EXCHANGE_URL=paper_url,
        LLM_API_URL="",
        PYTHONUNBUFFERED="1",
    )
    return env
