"""The benchmarks' world: a throwaway database, Django, and a paper exchange with enough symbols.

The paper exchange lists six real symbols and holds one position per symbol in one-way mode, so
200 open positions need 200 symbols: the bench starts it with ``extra_symbols=N``, paper's
synthetic clones of ADAUSDT (same filters and brackets, named ``SYN001USDT``...; see
:mod:`paper.symbols`).
"""

from __future__ import annotations

import copy
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

TEMPLATE = "ADAUSDT"
REAL_SYMBOLS = 6


def synthetic_symbols(count: int) -> list[str]:
    """The names of paper's first ``count`` synthetic symbols; start the paper exchange with
    ``extra_symbols=count`` to list them."""
    from paper.symbols import SYNTHETIC_TEMPLATE, synthetic_name

    assert SYNTHETIC_TEMPLATE == TEMPLATE
    return [synthetic_name(i) for i in range(1, count + 1)]


@contextmanager
def bench_database() -> Iterator[str]:
    """A database of its own: a temporary SQLite file, or a fresh PostgreSQL database next to
    the one in DATABASE_URL (dropped afterwards). Never the database the bot uses."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        folder = Path(tempfile.mkdtemp(prefix="arena-bench-db-"))
        os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.sqlite3'}"
        yield "sqlite"
        return
    import psycopg

    parts = urlsplit(url)
    name = f"arena_bench_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        yield "postgresql"
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_setup(*, paper_url: str) -> None:
    """Set Django up on the bench database, migrated, with the shipped defaults loaded."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings.test")
    os.environ["EXCHANGE"] = "paper"
    os.environ["PAPER_EXCHANGE_URL"] = paper_url
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.EXCHANGE = "paper"
    settings.PAPER_EXCHANGE_URL = paper_url
    # The bench measures passes and entries, not rate limits: the paper exchange's limits are
    # lifted too (bench/__main__.py), so the gateway's own minute budget is lifted with them.
    settings.EXCHANGE_WEIGHT_BUDGET_1M = 10**9
    call_command("migrate", verbosity=0)
    call_command("loaddata", "defaults", verbosity=0)


def symbols_enable(names: list[str], *, max_open_positions: int) -> None:
    """Create the synthetic symbols' rows (filters read from the exchange) and let the active
    risk profile hold ``max_open_positions`` small positions."""
    from risk.models import RiskProfile
    from trading.models import Symbol
    from trading.symbol_sync import symbol_sync_filters

    template = Symbol.objects.get(name=TEMPLATE)
    for name in names:
        if Symbol.objects.filter(name=name).exists():
            continue
        clone = copy.copy(template)
        clone.pk = None
        clone.id = None
        clone.name = name
        clone.base_asset = name.removesuffix("USDT")
        clone.save()
    symbol_sync_filters(actor="bench")
    Symbol.objects.update(enabled=True)
    RiskProfile.objects.filter(is_active=True).update(
        max_open_positions=max_open_positions,
        risk_pct=Decimal("1"),
        max_risk_usd=Decimal("20"),
    )


def book_clear(*, reason: str) -> None:
    """Record every position still open here closed: the bench starts a fresh exchange, on
    which none of them exists."""
    from trading.models import Position
    from trading.transitions import position_transition

    for position in Position.objects.filter(status__in=Position.OPEN_STATUSES):
        position_transition(
            position, Position.Status.CLOSED, reason=reason, actor="bench", follow=True
        )


def fast_gateway():
    """A gateway on the paper exchange without ccxt's client-side throttle (the exchange counts
    weight itself), and the order path's usual retry policy."""
    from trading.gateway import exchange_gateway

    gateway = exchange_gateway()
    gateway.client.enableRateLimit = False
    return gateway
