"""Compare the database with the exchange: ``manage.py reconcile [--repair]``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.reconcile import reconcile


class Command(BaseCommand):
    help = (
        "Compare positions, orders and TP/SL of the database with the exchange and report each "
        "difference. With --repair, fix what is safe: record closes that happened on the "
        "exchange, cancel our orders left without a position, mark intents the exchange never "
        "received. Exits 1 while any difference is left unrepaired."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--repair", action="store_true", help="Fix the safe differences (see above)."
        )

    def handle(self, *args, **options) -> None:
        report = reconcile(repair=options["repair"])
        if report.error:
            raise CommandError(f"Nothing compared: {report.error}")
        if not report.differences:
            self.stdout.write(self.style.SUCCESS("Database and exchange agree."))
            return
        for difference in report.differences:
            style = self.style.SUCCESS if difference.repaired else self.style.WARNING
            self.stdout.write(style(str(difference)))
        repaired = len(report.differences) - len(report.unresolved)
        self.stdout.write(
            f"{len(report.differences)} difference(s), {repaired} repaired, "
            f"{len(report.unresolved)} left."
        )
        if report.unresolved:
            hint = "" if options["repair"] else " Run with --repair to fix the safe ones."
            raise CommandError(
                f"{len(report.unresolved)} difference(s) left unrepaired.{hint}", returncode=1
            )
