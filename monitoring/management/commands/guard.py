"""``python manage.py guard [--once]``: the guard pass, once or every 5 s until Ctrl-C."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from monitoring.loop import run_every


class Command(BaseCommand):
    help = (
        "Run the guard: every open position keeps its stop-loss and take-profit, closes are "
        "recorded. Once with --once, else every --interval seconds until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        parser.add_argument(
            "--interval", type=float, default=5.0, help="Seconds between passes (default 5)."
        )

    def handle(self, *args: object, once: bool, interval: float, **options: object) -> None:
        from trading.guard import guard_pass

        run_every(
            seconds=interval,
            once=once,
            run=lambda: guard_pass().summary(),
            write=self.stdout.write,
        )
