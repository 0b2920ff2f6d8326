"""Run inside ``manage.py shell -c`` against the worker's database: what the stream test needs
beside ``tests.celery.probe``."""

from __future__ import annotations

import json
import sys
import time

POLL_SECONDS = 0.1


def guard_off() -> None:
    """Disable the guard's beat schedule: only the stream can record a close."""
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    PeriodicTask.objects.filter(task="trading.tasks.guard_pass_task").update(enabled=False)
    PeriodicTasks.update_changed()


def wait_stream_connected(*, timeout: float) -> None:
    from trading.models import StreamState

    deadline = time.monotonic() + timeout
    while not StreamState.objects.filter(connected=True).exists():
        if time.monotonic() > deadline:
            print(json.dumps({"stream": list(StreamState.objects.values("connected", "error"))}))
            sys.exit(1)
        time.sleep(POLL_SECONDS)
    print(json.dumps({"connected": True}))


def position(*, symbol: str) -> None:
    """The symbol's latest position: status, stop-loss, how its close was recorded, its fills."""
    from trading.models import Position, TradeEvent

    p = Position.objects.filter(symbol__name=symbol).order_by("-id").first()
    closes = TradeEvent.objects.filter(position=p, kind=TradeEvent.Kind.CLOSED)
    print(
        json.dumps(
            {
                "status": p.status,
                "stop_loss": str(p.stop_loss_price),
                "close_reason": p.close_reason,
                "realized_pnl": None if p.realized_pnl is None else str(p.realized_pnl),
                "close_actors": [e.actor for e in closes],
                "fills": sorted(p.fills.values_list("trade_id", flat=True)),
            }
        )
    )
