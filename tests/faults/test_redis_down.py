"""Redis, the Celery broker, goes away for a while and comes back.

A throwaway ``redis-server`` on a free port (never the machine's Redis) carries one Celery worker
and Beat, subprocesses on pytest's test database (committed rows: a transactional test) and a
paper exchange of this process. The sentinel runs as its own process (``manage.py sentinel``), the
way it does without Celery: it needs no broker to check and to store an alert. With Redis down,
Beat cannot publish and the worker gets nothing: no guard pass, no trade cycle. The sentinel sees
the guard's heartbeat go stale and alerts; once Redis is back, the cycles and the guard resume.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")
CYCLE_SECONDS = 5
STALE_SECONDS = 10  # MonitoringSettings' minimum
SENTINEL_SECONDS = 2
WAIT_SECONDS = 40
PROTECTED = ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
TRADED = ("BTCUSDT", "ETHUSDT", "XRPUSDT")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _until(check: Callable[[], Any], *, seconds: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"not within {seconds} s: {what}")


class RedisServer:
    """A ``redis-server`` of this test only: no persistence, on one port across restarts."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        log = (self.directory / f"redis-{self.starts}.log").open("wb")
        self.starts += 1
        self.process = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        _until(answers, seconds=10, what=f"redis-server answering on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def exchange() -> Iterator[Any]:
    from paper.testing import PaperControl, PaperExchangeServer

    with PaperExchangeServer(port=0, feed="static", extra_symbols=0) as server:
        control = PaperControl(server.url)
        control.set_balance("USDT", "100000")
        yield control


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start subprocesses in their own process groups; all terminated at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"process-{len(started)}.log").open("wb")
        started.append(
            subprocess.Popen(
                list(args),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _env(*, paper_url: str, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="arena.settings.test",
        DATABASE_URL=_database_url(),
        REDIS_URL=redis_url,
        EXCHANGE="paper",
        PAPER_EXCHANGE_URL=paper_url,
        LLM_API_URL="",
        CONN_MAX_AGE="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def _rules() -> None:
    """Three symbols on the manual agent, cycling every few seconds; the rest disabled."""
    from core.models import MonitoringSettings
    from risk.models import RiskProfile
    from trading.models import Strategy, Symbol

    RiskProfile.objects.filter(is_active=True).update(
        max_open_positions=5, risk_pct=Decimal("5"), max_risk_usd=Decimal("100")
    )
    Symbol.objects.update(enabled=False)
    Symbol.objects.filter(name__in=TRADED).update(enabled=True)
    Strategy.objects.update(agent=Strategy.Agent.MANUAL, interval_seconds=CYCLE_SECONDS)
    rules = MonitoringSettings.load()
    rules.heartbeat_stale_seconds = STALE_SECONDS
    rules.save()
    call_command("sync_schedules", verbosity=0)


def _signal(name: str) -> None:
    from signals.services import manual_signal_create
    from trading.models import Symbol

    manual_signal_create(
        symbol=Symbol.objects.get(name=name),
        action="LONG",
        note="redis-down test",
        created_by="redis-down-test",
    )


def _protected(exchange: Any, name: str) -> bool:
    """``name`` has a position on the exchange with its stop-loss and take-profit."""
    if not any(p["symbol"] == name for p in exchange.positions()):
        return False
    algo = exchange.open_orders()["algo_orders"]
    return sorted(o["orderType"] for o in algo if o["symbol"] == name) == PROTECTED


def _guard_ok_since(moment: datetime) -> bool:
    from core.models import Heartbeat

    return Heartbeat.objects.filter(
        process=Heartbeat.Process.GUARD, ok=True, finished_at__gte=moment
    ).exists()


def test_broker_when_redis_down_for_a_while_then_sentinel_alerts_and_trading_resumes_once(
    transactional_db: None,
    defaults: None,
    exchange: Any,
    redis_server: RedisServer,
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    from monitoring.models import Alert

    # Arrange: worker and Beat on the throwaway Redis; BTCUSDT opens before the outage.
    _rules()
    env = _env(paper_url=exchange.url, redis_url=redis_server.url)
    processes(
        env,
        str(CELERY),
        "-A",
        "arena",
        "worker",
        "-Q",
        "default,guard,cycles,sentinel",
        "-c",
        "2",
        "--hostname",
        f"arena-redis-down-{uuid.uuid4().hex[:8]}@%h",
        "--loglevel",
        "INFO",
    )
    processes(
        env,
        str(CELERY),
        "-A",
        "arena",
        "beat",
        "--scheduler",
        "django_celery_beat.schedulers:DatabaseScheduler",
    )
    _signal("BTCUSDT")
    _until(lambda: _protected(exchange, "BTCUSDT"), seconds=WAIT_SECONDS, what="BTCUSDT opened")
    opened_at = timezone.now()
    _until(lambda: _guard_ok_since(opened_at), seconds=WAIT_SECONDS, what="a guard pass")
    # The sentinel starts only now, so the guard has a fresh heartbeat when it first looks.
    sentinel = processes(
        env, sys.executable, "manage.py", "sentinel", "--interval", str(SENTINEL_SECONDS)
    )
    accepted_before = exchange.stats()["orders_accepted"]

    # Act 1: Redis dies; a signal arrives while it is gone.
    redis_server.kill()
    down_at = timezone.now()
    _signal("ETHUSDT")
    stale = _until(
        lambda: Alert.objects.filter(key="sentinel.guard_stale", created_at__gte=down_at).first(),
        seconds=STALE_SECONDS + 10 * SENTINEL_SECONDS,
        what="the sentinel's stale-guard alert while Redis is down",
    )
    down_for = (timezone.now() - down_at).total_seconds()
    # Its work is done; passes this frequent would eat the minute's weight budget of the cycles.
    os.killpg(sentinel.pid, signal.SIGTERM)
    sentinel.wait(timeout=30)
    traded_while_down = exchange.stats()["orders_accepted"] - accepted_before
    eth_while_down = any(p["symbol"] == "ETHUSDT" for p in exchange.positions())

    # Act 2: Redis comes back on the same port, empty; another signal after its return.
    redis_server.start()
    back_at = timezone.now()
    _signal("XRPUSDT")
    for name in ("ETHUSDT", "XRPUSDT"):
        _until(
            lambda name=name: _protected(exchange, name),
            seconds=WAIT_SECONDS,
            what=f"{name} opened after Redis came back",
        )
    _until(lambda: _guard_ok_since(back_at), seconds=WAIT_SECONDS, what="guard passes again")
    # An observation window, not a synchronisation: a redelivered cycle or a second entry would
    # show up on the exchange within two cycle intervals.
    time.sleep(2 * CYCLE_SECONDS)

    # Assert
    from trading.models import Order, Position

    assert stale.severity == "critical", stale.message
    assert traded_while_down == 0, f"orders accepted with the broker down ({down_for:.0f} s)"
    assert not eth_while_down
    positions = exchange.positions()
    assert sorted(p["symbol"] for p in positions) == sorted(TRADED)
    algo = exchange.open_orders()["algo_orders"]
    for name in TRADED:
        types = sorted(o["orderType"] for o in algo if o["symbol"] == name)
        assert types == PROTECTED, (name, types)
    assert exchange.stats()["orders_accepted"] == 3 * len(TRADED)
    open_here = Position.objects.filter(status__in=Position.OPEN_STATUSES)
    assert sorted(open_here.values_list("symbol__name", flat=True)) == sorted(TRADED)
    assert Order.objects.filter(purpose="ENTRY", status="FILLED").count() == len(TRADED)
