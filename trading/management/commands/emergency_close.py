"""Close everything now: ``manage.py emergency_close [--symbol S ...] [--yes] [--reason TEXT]``."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.emergency import (
    EmergencyPlan,
    UnknownSymbols,
    emergency_close_all,
    emergency_plan,
)
from trading.management.commands._operator import shell_actor
from trading.management.commands._progress import progress_echo

# Exit status when the command ran but something is still open on the exchange.
EXIT_LEFT_OPEN = 2


class Command(BaseCommand):
    help = (
        "Halt trading, close every position on the exchange reduce-only at market, then cancel "
        "every open order (regular and TP/SL) of each symbol once it is flat, then check on "
        "the exchange that nothing is left. "
        "Shows what it will touch and asks for 'yes' unless --yes is given. Exits 2 when "
        "something is left open or the exchange could not be read to verify."
    )
    # Tests hand in the answer to the confirmation prompt; the shell uses the terminal.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--symbol",
            action="append",
            dest="symbols",
            metavar="SYMBOL",
            help="Only this symbol, e.g. BTCUSDT (repeat for several). Default: everything.",
        )
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument(
            "--reason", default="operator emergency close", help="Why; kept with the halt."
        )

    def handle(self, *args, **options) -> None:
        reason = options["reason"].strip()
        if not reason:
            raise CommandError("--reason must not be empty.")
        try:
            plan = emergency_plan(symbols=options["symbols"])
        except UnknownSymbols as e:
            raise CommandError(str(e)) from e
        self._show(plan)
        if not options["yes"] and not self._confirmed(options.get("stdin") or sys.stdin):
            raise CommandError("Aborted: nothing was done.")

        with progress_echo(self.stdout):  # each step as it happens, then the report
            report = emergency_close_all(
                symbols=list(plan.symbols) if options["symbols"] else None,
                reason=reason,
                actor=shell_actor(),
            )
        self.stdout.write(
            "Trading halted." if report.halted else "Trading was already halted; left halted."
        )
        self.stdout.write(f"Orders cancelled: {report.orders_cancelled}.")
        if not report.results:
            self.stdout.write("Nothing was open.")
        for result in report.results:
            style = self.style.ERROR if result in report.left_open else self.style.SUCCESS
            self.stdout.write(style(f"  {result}"))
        if report.unverified:
            raise CommandError(
                f"{report.unverified[0].detail}. Nothing is known to be closed: check the "
                "exchange by hand.",
                returncode=EXIT_LEFT_OPEN,
            )
        if not report.ok:
            raise CommandError(
                f"{len(report.left_open)} symbol(s) LEFT OPEN: "
                f"{', '.join(r.symbol for r in report.left_open)}. Check them on the exchange.",
                returncode=EXIT_LEFT_OPEN,
            )
        self.stdout.write(self.style.SUCCESS("Flat: nothing is open on the exchange."))

    def _show(self, plan: EmergencyPlan) -> None:
        write = self.stdout.write
        write("Emergency close will:")
        write(
            "  1. halt trading (it is enabled now)"
            if plan.trading_enabled
            else "  1. keep trading halted (it is halted already)"
        )
        if plan.exchange_error:
            write(self.style.WARNING(f"  ! exchange unreadable: {plan.exchange_error}"))
            write("    (what follows is what the database knows; the close will still try)")
        rows = plan.position_rows
        write(f"  2. close {len(rows)} position(s) reduce-only at market:")
        for symbol, side, quantity, where in rows:
            write(f"       {symbol} {side} {quantity} ({where})")
        write(f"  3. then, for each symbol once flat, cancel {len(plan.orders)} open order(s):")
        for order in plan.orders:
            kind = "conditional" if order.is_conditional else "regular"
            stop = f" @ {order.stop_price.normalize():f}" if order.stop_price else ""
            write(
                f"       {order.symbol} {order.order_type} {order.side}{stop} ({kind}, "
                f"{order.client_order_id})"
            )
        scope = ", ".join(plan.symbols) if plan.symbols else "none"
        write(f"  4. check on the exchange that nothing is left (symbols: {scope})")

    def _confirmed(self, stdin) -> bool:
        self.stdout.write("Type 'yes' to go ahead: ", ending="")
        self.stdout.flush()
        answer = stdin.readline()
        if not answer:
            self.stderr.write("No answer (no input): not confirmed.")
            return False
        return answer.strip().lower() == "yes"
