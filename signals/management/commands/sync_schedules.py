"""Create, update or disable the trade-cycle PeriodicTasks so they match the strategies."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from signals.schedules import cycle_schedules_sync


class Command(BaseCommand):
    help = (
        "One beat schedule per strategy (cycle: <SYMBOL>, queue cycles, every interval_seconds, "
        "expiring after one interval, enabled with its symbol). Safe to run any time."
    )

    def handle(self, *args, **options) -> None:
        result = cycle_schedules_sync()
        for label, names in (
            ("created", result.created),
            ("updated", result.updated),
            ("disabled", result.disabled),
        ):
            for name in names:
                self.stdout.write(f"{label}: {name}")
        if not result.changed:
            self.stdout.write("Cycle schedules already match the strategies.")
