"""A worker process for the kill tests: ``python -m tests.faults.worker <setup|cycle|recover>``.

Runs on the database in DATABASE_URL and the exchange in PAPER_EXCHANGE_URL (both from the test).
``recover`` is what a restarted worker does — reconcile with repair, guard passes, the next
trade cycle — and prints the state as JSON. The dead worker's lease is not aged: a lease whose
holder is a dead process of this host is taken at once. The guard's debounce and reconcile's
grace period still are (rows made older instead of waiting).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings.test")
    import django

    django.setup()


def _gateway():
    from exchange.retry import RetryPolicy
    from trading.gateway import exchange_gateway

    gateway = exchange_gateway(retry_policy=RetryPolicy(max_total_seconds=5))
    gateway.client.enableRateLimit = False
    return gateway


def setup() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("loaddata", "defaults", verbosity=0)


def cycle() -> None:
    from signals.cycles import trade_cycle_run
    from signals.types import Decision
    from trading.models import Symbol

    symbol = Symbol.objects.get(name="BTCUSDT")
    print("cycle-start", flush=True)
    outcome = trade_cycle_run(
        symbol_id=symbol.pk, signal=Decision(action="LONG", reason="killed"), gateway=_gateway()
    )
    print(json.dumps({"cycle": str(outcome)}), flush=True)


def _age_everything(seconds: int) -> None:
    from django.db.models import F

    from trading.models import Order, Position, ProtectionState

    delta = timedelta(seconds=seconds)
    Position.objects.update(opened_at=F("opened_at") - delta)
    Order.objects.update(created_at=F("created_at") - delta, updated_at=F("updated_at") - delta)
    ProtectionState.objects.exclude(next_attempt_at=None).update(
        next_attempt_at=F("next_attempt_at") - delta
    )


def recover() -> None:
    from signals.cycles import trade_cycle_run
    from signals.types import Decision
    from trading.guard import guard_pass
    from trading.models import Position, Symbol
    from trading.reconcile import reconcile

    _age_everything(300)
    repaired = reconcile(repair=True, gateway=_gateway())
    guard_pass(gateway=_gateway())
    _age_everything(300)
    guard_pass(gateway=_gateway())
    symbol = Symbol.objects.get(name="BTCUSDT")
    again = trade_cycle_run(
        symbol_id=symbol.pk, signal=Decision(action="LONG", reason="after"), gateway=_gateway()
    )
    _age_everything(300)
    guard_pass(gateway=_gateway())
    final = reconcile(repair=False, gateway=_gateway())
    state = {
        "reconcile_repair": [str(d) for d in repaired.differences],
        "next_cycle": str(again),
        "reconcile_after": [str(d) for d in final.differences],
        "positions": [
            [p.symbol.name, p.side, p.status, format(p.quantity.normalize(), "f")]
            for p in Position.objects.order_by("id")
        ],
    }
    print(json.dumps(state), flush=True)


if __name__ == "__main__":
    _setup_django()
    {"setup": setup, "cycle": cycle, "recover": recover}[sys.argv[1]]()
