"""A real Celery worker with embedded beat, started by the test and stopped at its end."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.celery_worker import CELERY, ROOT, Stack


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    """Start ``celery worker -B`` on all four queues; stopped (its process group) at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(stack: Stack) -> subprocess.Popen[bytes]:
        log = stack.log.open("wb")
        process = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "arena",
                "worker",
                "-B",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--queues",
                "default,guard,cycles,sentinel",
                "--concurrency",
                "2",
                "--hostname",
                f"arena-test-{uuid.uuid4().hex[:8]}@%h",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=stack.env,
            stdout=log,
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
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
