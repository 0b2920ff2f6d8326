"""A worker started as Celery's documentation starts one (no --queues) consumes every queue of
the arena: the guard's, the cycles', the sentinel's and the default one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.celery_worker import CELERY, ROOT, _env, _run

WAIT_SECONDS = 90

PROBE = """
import json, time
from django.utils import timezone
from core.models import Heartbeat
from dashboard.models import EquitySnapshot
from trading.tasks import guard_pass_task
from dashboard.tasks import equity_snapshot_task
from arena.celery import app
routes = {
    'guard': app.amqp.router.route({}, 'trading.tasks.guard_pass_task')['queue'].name,
    'sentinel': app.amqp.router.route({}, 'dashboard.tasks.equity_snapshot_task')['queue'].name,
}
guard_pass_task.apply_async()
equity_snapshot_task.apply_async()
deadline = time.monotonic() + %(wait)s
while time.monotonic() < deadline:
    done = {
        'guard': Heartbeat.objects.filter(process='guard').exists(),
        'sentinel': EquitySnapshot.objects.exists(),
    }
    if all(done.values()):
        break
    time.sleep(0.5)
counts = {
    'guard': Heartbeat.objects.filter(process='guard').count(),
    'sentinel': EquitySnapshot.objects.count(),
}
print(json.dumps({'routes': routes, 'done': done, 'counts': counts}))
"""


def test_worker_when_started_without_queues_then_consumes_guard_and_sentinel_queues(
    tmp_path: Path,
) -> None:
    from paper.testing import PaperExchangeServer

    with PaperExchangeServer(port=0, feed="static") as server:
        _worker_consumes_every_queue(tmp_path, server.url)


def _worker_consumes_every_queue(tmp_path: Path, url: str) -> None:
    env = _env(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        broker_dir=tmp_path / "broker",
        redis_url="",
        paper_url=url,
    )
    _run(env, "migrate", "--no-input")
    _run(env, "loaddata", "defaults")
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            str(CELERY),
            "-A",
            "arena",
            "worker",
            "--hostname",
            f"arena-queues-{uuid.uuid4().hex[:8]}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", PROBE % {"wait": 90}],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS + 60,
            check=False,
        )
    finally:
        os.kill(worker.pid, signal.SIGTERM)  # warm shutdown: the worker stops its children
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][-1])
    assert state["routes"] == {"guard": "guard", "sentinel": "sentinel"}
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    assert state["done"] == {"guard": True, "sentinel": True}, worker_log[-4000:]
    queues = worker_log.split("[queues]")[1].split("[tasks]")[0]
    for name in ("default", "guard", "cycles", "sentinel"):
        assert f".> {name} " in queues and f"exchange={name}(direct) key={name}" in queues
    # Each queue on its own key: a queue bound to another's key would run a task once per queue.
    assert state["counts"] == {"guard": 1, "sentinel": 1}
