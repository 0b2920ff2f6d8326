"""Run inside ``manage.py shell -c`` against the worker's own database (not pytest's test DB).

The Celery test drives a real worker in another process; these helpers set the rules up through
the same services the admin uses and wait, with a deadline, for state the worker writes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from django.db.models import Count, Q

POLL_SECONDS = 0.5


def setup(*, manual: list[str], interval_seconds: int, disabled: list[str]) -> None:
    """Put these symbols on the manual agent at this interval; disable others. Saves go
    through ``rule_save`` and commit, so the post-commit hook resyncs the beat schedules."""
    from risk.services import rule_save
    from trading.models import Strategy

    for name in manual:
        strategy = Strategy.objects.get(symbol__name=name)
        strategy.agent = Strategy.Agent.MANUAL
        strategy.interval_seconds = interval_seconds
        rule_save(instance=strategy, actor="celery-test")
    for name in disabled:
        set_enabled(symbol=name, enabled=False)


def set_enabled(*, symbol: str, enabled: bool) -> None:
    from risk.services import rule_save
    from trading.models import Symbol

    instance = Symbol.objects.get(name=symbol)
    instance.enabled = enabled
    rule_save(instance=instance, actor="celery-test")


def signal(*, symbol: str, action: str) -> None:
    from signals.services import manual_signal_create
    from trading.models import Symbol

    manual_signal_create(
        symbol=Symbol.objects.get(name=symbol), action=action, created_by="celery-test"
    )


def snapshot() -> dict[str, Any]:
    """Positions with their protection, cycles run, and the beat schedules, by symbol."""
    from django_celery_beat.models import PeriodicTask

    from signals.models import SignalDecision
    from trading.models import Position

    positions = (
        Position.objects.select_related("symbol")
        .annotate(
            live_exits=Count(
                "orders",
                filter=Q(orders__purpose__in=["TP", "SL"], orders__status="OPEN"),
            )
        )
        .order_by("id")
    )
    return {
        "positions": [
            {
                "symbol": p.symbol.name,
                "side": p.side,
                "status": p.status,
                "take_profit": None if p.take_profit_price is None else str(p.take_profit_price),
                "stop_loss": None if p.stop_loss_price is None else str(p.stop_loss_price),
                "live_exits": p.live_exits,
                "close_reason": p.close_reason,
            }
            for p in positions
        ],
        "decisions": {
            row["symbol__name"]: row["n"]
            for row in SignalDecision.objects.values("symbol__name").annotate(n=Count("id"))
        },
        "schedules": {
            t.name: {"enabled": t.enabled, "every": t.interval.every, "queue": t.queue}
            for t in PeriodicTask.objects.filter(task="trading.tasks.trade_cycle_task")
        },
    }


def _protected_open(state: dict[str, Any], symbol: str, side: str) -> bool:
    return any(
        p["symbol"] == symbol
        and p["side"] == side
        and p["status"] == "OPEN"
        and p["take_profit"]
        and p["stop_loss"]
        and p["live_exits"] == 2
        for p in state["positions"]
    )


def _closed(state: dict[str, Any], symbol: str) -> bool:
    rows = [p for p in state["positions"] if p["symbol"] == symbol]
    return bool(rows) and all(p["status"] == "CLOSED" for p in rows)


def _closed_by_exit(state: dict[str, Any], symbol: str) -> bool:
    """A position (of ``symbol``, or of any symbol for "*") was protected and then closed by its
    take-profit or stop-loss on the exchange."""
    return any(
        (symbol == "*" or p["symbol"] == symbol)
        and p["status"] == "CLOSED"
        and p["close_reason"] in ("TP", "SL")
        and p["take_profit"]
        and p["stop_loss"]
        for p in state["positions"]
    )


CONDITIONS = {
    "open": lambda state, symbol, side: _protected_open(state, symbol, side),
    "closed": lambda state, symbol, side: _closed(state, symbol),
    "closed_by_exit": lambda state, symbol, side: _closed_by_exit(state, symbol),
}


def wait(*, condition: str, symbols: dict[str, str], timeout: float) -> None:
    """Poll until ``condition`` holds for every symbol (name -> side) or the deadline passes;
    print the last snapshot as JSON and exit 1 on timeout."""
    check = CONDITIONS[condition]
    deadline = time.monotonic() + timeout
    while True:
        state = snapshot()
        if all(check(state, symbol, side) for symbol, side in symbols.items()):
            print(json.dumps(state))
            return
        if time.monotonic() > deadline:
            print(json.dumps(state))
            sys.exit(1)
        time.sleep(POLL_SECONDS)
