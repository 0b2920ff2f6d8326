"""The fault soak's trading process: ``python -m bench.soak_worker <setup|cycles> [--interval S]``.

``setup`` migrates the soak's database and loads the shipped rules, with every paper symbol
enabled and room for a position in each; ``cycles`` runs a trade cycle of every enabled symbol
every ``--interval`` seconds with a random signal (mostly entries, sometimes FLAT), so positions
open and close all the time while the soak's faults and kills land. Runs until killed.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from decimal import Decimal


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings.test")
    import django

    django.setup()


def setup() -> None:
    from django.core.management import call_command

    from risk.models import RiskProfile
    from trading.models import Symbol

    call_command("migrate", verbosity=0)
    call_command("loaddata", "defaults", verbosity=0)
    Symbol.objects.update(enabled=True)
    RiskProfile.objects.filter(is_active=True).update(
        max_open_positions=10, risk_pct=Decimal("5"), max_risk_usd=Decimal("300")
    )


def cycles(*, interval: float, seed: int) -> None:
    from django.db import close_old_connections

    from signals.cycles import trade_cycle_run
    from signals.types import Decision
    from trading.models import Symbol

    rng = random.Random(seed)
    while True:
        started = time.monotonic()
        close_old_connections()
        for symbol_id in Symbol.objects.filter(enabled=True).values_list("id", flat=True):
            action = rng.choices(["LONG", "SHORT", "FLAT"], weights=[4, 4, 1])[0]
            try:
                outcome = trade_cycle_run(
                    symbol_id=symbol_id, signal=Decision(action=action, reason="soak")
                )
                print(outcome, flush=True)
            except Exception as exc:  # the soak counts on this process staying up
                print(f"cycle of {symbol_id} failed: {type(exc).__name__}: {exc}", flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_worker")
    parser.add_argument("command", choices=["setup", "cycles"])
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _django()
    if args.command == "setup":
        setup()
    else:
        cycles(interval=args.interval, seed=args.seed)


if __name__ == "__main__":
    main()
