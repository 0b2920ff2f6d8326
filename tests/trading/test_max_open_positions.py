"""``max_open_positions`` holds across workers: two cycles of two symbols released at the same
instant, in two real processes, open one position between them when the limit is 1.

On PostgreSQL the entries are admitted under the kill switch's row lock; on SQLite (a file, as
the workers use it) every write transaction is serialised. Judged on the exchange.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.support.exchange import exchange_quantity
from tests.trading.race import run_open_after_barrier
from trading.models import Position

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3


def _race(env: dict[str, str]) -> list[tuple[str, str, str]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=run_open_after_barrier, args=(barrier, results, env, symbol, 1))
        for symbol in ("BTCUSDT", "BNBUSDT")
    ]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    return outcomes


def _positions_on_exchange(paper: object) -> list[str]:
    return sorted(s for s in ("BTCUSDT", "BNBUSDT") if exchange_quantity(paper, s) != Decimal(0))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_cycles_when_btc_and_bnb_start_at_once_with_max_one_on_postgres_then_one_position(
    scenario_market: object,
) -> None:
    db = connection.settings_dict
    env = {
        "DJANGO_SETTINGS_MODULE": "arena.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "EXCHANGE": "paper",
        "PAPER_EXCHANGE_URL": django_settings.PAPER_EXCHANGE_URL,
    }
    for _ in range(ROUNDS):
        scenario_market.reset()
        scenario_market.set_price("BTCUSDT", "100000")
        scenario_market.set_price("BNBUSDT", "964")
        scenario_market.set_balance("USDT", "1833.33")
        Position.objects.all().update(status=Position.Status.CLOSED)

        outcomes = _race(env)

        statuses = sorted(status for _, status, _ in outcomes)
        assert statuses == ["opened", "refused"], outcomes
        assert len(_positions_on_exchange(scenario_market)) == 1, outcomes
        refused = next(reason for _, status, reason in outcomes if status == "refused")
        assert "the most allowed is 1" in refused, outcomes


def test_cycles_when_btc_and_bnb_start_at_once_with_max_one_on_sqlite_then_one_position(
    paper: object, tmp_path: Path
) -> None:
    env = {
        "DJANGO_SETTINGS_MODULE": "arena.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'race.sqlite3'}",
        "EXCHANGE": "paper",
        "PAPER_EXCHANGE_URL": paper.url,
    }
    import os

    setup = subprocess.run(
        [sys.executable, "-m", "tests.faults.worker", "setup"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr[-2000:]
    paper.set_price("BTCUSDT", "100000")
    paper.set_price("BNBUSDT", "964")
    paper.set_balance("USDT", "1833.33")

    outcomes = _race(env)

    statuses = sorted(status for _, status, _ in outcomes)
    assert statuses == ["opened", "refused"], outcomes
    assert len(_positions_on_exchange(paper)) == 1, outcomes
    assert paper.stats()["orders_accepted"] == 3, outcomes  # one entry, its stop and target
