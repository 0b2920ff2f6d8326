"""Two Celery workers and Beat on Redis and PostgreSQL trade every paper symbol at once.

The workers and Beat are subprocesses on pytest's test database (committed rows: transactional
tests) and the paper exchange of this process. Every symbol gets a manual LONG or SHORT; the test
watches the exchange itself and records, per symbol, when the position appeared and when its
stop-loss did. Twenty symbols: paper's six real ones and fourteen synthetic clones of ADAUSDT
(``SYN001USDT``..., paper's ``extra_symbols``; one position per symbol in one-way mode), with
project rows copied from ADAUSDT's.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")
GUARD_INTERVAL_SECONDS = 5
CYCLE_SECONDS = 10
DEADLINE_SECONDS = 120
FILTER_REJECTIONS = ("-1111", "-4164", "-4005", "-4003")
SYMBOLS = 20
REAL_SYMBOLS = 6
TEMPLATE = "ADAUSDT"


@pytest.fixture
def exchange() -> Iterator[Any]:
    from paper.testing import PaperControl, PaperExchangeServer

    extra = SYMBOLS - REAL_SYMBOLS
    with PaperExchangeServer(port=0, feed="static", extra_symbols=extra) as server:
        control = PaperControl(server.url)
        control.set_balance("USDT", "100000")
        yield control


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _env(paper_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="arena.settings.test",
        DATABASE_URL=_database_url(),
        REDIS_URL=os.environ["REDIS_URL"],
        EXCHANGE="paper",
        PAPER_EXCHANGE_URL=paper_url,
        LLM_API_URL="",
        CONN_MAX_AGE="0",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Any]:
    """Start Celery processes in their own process groups; all terminated at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], *args: str) -> None:
        log = (tmp_path / f"celery-{len(started)}.log").open("wb")
        started.append(
            subprocess.Popen(
                [str(CELERY), "-A", "arena", *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

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


def _synthetic_symbols_create() -> None:
    """Symbol and Strategy rows for paper's synthetic symbols, copied from the template's: the
    same filters the exchange serves for them (paper clones the template's)."""
    from paper.symbols import is_synthetic, symbols
    from trading.models import Strategy, Symbol

    template = Symbol.objects.get(name=TEMPLATE)
    strategy = Strategy.objects.get(symbol=template)
    for name in [n for n in symbols() if is_synthetic(n)]:
        clone = copy.copy(template)
        clone.pk = None
        clone.name = name
        clone.base_asset = name.removesuffix("USDT")
        clone.save()
        rules = copy.copy(strategy)
        rules.pk = None
        rules.symbol = clone
        rules.save()


def _rules_for_every_symbol() -> list[str]:
    """Every symbol enabled on the manual agent with a signal waiting; room for all of them."""
    from risk.models import RiskProfile
    from signals.services import manual_signal_create
    from trading.models import Strategy, Symbol

    _synthetic_symbols_create()
    RiskProfile.objects.filter(is_active=True).update(
        max_open_positions=SYMBOLS + 5, risk_pct=Decimal("5"), max_risk_usd=Decimal("100")
    )
    Symbol.objects.update(enabled=True)
    Strategy.objects.update(agent=Strategy.Agent.MANUAL, interval_seconds=CYCLE_SECONDS)
    names = list(Symbol.objects.order_by("name").values_list("name", flat=True))
    for i, name in enumerate(names):
        manual_signal_create(
            symbol=Symbol.objects.get(name=name),
            action="LONG" if i % 2 == 0 else "SHORT",
            created_by="multiworker-test",
        )
    call_command("sync_schedules", verbosity=0)
    return names


def _watch(exchange: Any, names: list[str]) -> dict[str, dict[str, float]]:
    """Poll the exchange until every symbol has a position with a stop-loss (or the deadline);
    return when each position and each stop-loss was first seen."""
    seen: dict[str, dict[str, float]] = {name: {} for name in names}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        now = time.monotonic()
        for row in exchange.positions():
            seen.setdefault(row["symbol"], {}).setdefault("position", now)
        for order in exchange.open_orders()["algo_orders"]:
            if order["orderType"] == "STOP_MARKET":
                seen.setdefault(order["symbol"], {}).setdefault("stop", now)
        if all("stop" in seen[name] for name in names):
            break
        time.sleep(0.2)
    return seen


def test_workers_when_two_workers_and_beat_trade_every_symbol_then_no_duplicates_and_stops_in_time(
    transactional_db: None, defaults: None, exchange: Any, processes: Any
) -> None:
    names = _rules_for_every_symbol()
    assert len(names) == SYMBOLS
    env = _env(exchange.url)
    for _ in range(2):
        processes(
            env,
            "worker",
            "-Q",
            "default,guard,cycles,sentinel",
            "-c",
            "2",
            "--hostname",
            f"arena-mw-{uuid.uuid4().hex[:8]}@%h",
            "--loglevel",
            "INFO",
        )
    processes(env, "beat", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler")

    seen = _watch(exchange, names)
    # An observation window, not a synchronisation: two more guard intervals in which a
    # duplicate entry or a second stop would show up on the exchange.
    time.sleep(2 * GUARD_INTERVAL_SECONDS)

    from trading.models import Order, Position, TradeEvent

    stats = exchange.stats()
    positions = exchange.positions()
    algo = exchange.open_orders()["algo_orders"]
    assert sorted(p["symbol"] for p in positions) == names, seen
    late = {
        n: round(s["stop"] - s["position"], 1)
        for n, s in seen.items()
        if s["stop"] - s["position"] > GUARD_INTERVAL_SECONDS
    }
    assert not late, f"stop-loss later than one guard interval after the entry: {late}"
    for name in names:
        types = sorted(o["orderType"] for o in algo if o["symbol"] == name)
        assert types == ["STOP_MARKET", "TAKE_PROFIT_MARKET"], (name, types)
    assert stats["orders_accepted"] == 3 * len(names), stats
    open_here = Position.objects.filter(status__in=Position.OPEN_STATUSES)
    assert sorted(open_here.values_list("symbol__name", flat=True)) == names
    assert Order.objects.filter(purpose="ENTRY", status="FILLED").count() == len(names)
    bad = {c: n for c, n in stats["rejections"].items() if c in FILTER_REJECTIONS}
    assert not bad, stats["rejections"]
    # Every guard pass ran the post-trade check on trades the engine sized: none was cut.
    assert not TradeEvent.objects.filter(kind=TradeEvent.Kind.PARTIAL).exists()
