"""``python manage.py sentinel [--once]``: the health checks, once or every 5 min until Ctrl-C."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from monitoring.loop import run_every
from monitoring.sentinel import sentinel_pass


class Command(BaseCommand):
    help = (
        "Run the sentinel: TP/SL presence, PnL drift, guard heartbeat, exchange reachability and "
        "the kill switch, with alerts. Once with --once, else every --interval seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        parser.add_argument(
            "--interval", type=float, default=300.0, help="Seconds between passes (default 300)."
        )

    def handle(self, *args: object, once: bool, interval: float, **options: object) -> None:

        run_every(
            seconds=interval,
            once=once,
            run=lambda: sentinel_pass().summary(),
            write=self.stdout.write,
        )
