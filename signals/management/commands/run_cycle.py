"""Run one trade cycle of one symbol now: ``manage.py run_cycle --symbol BTCUSDT [--signal long]``.

Prints what was done or why it was refused and exits 0 either way; exits non-zero only when the
cycle failed (an exchange error, a lost answer) or the arguments are wrong.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from signals.cycles import trade_cycle_run
from signals.types import Decision
from trading.selectors import symbol_get


class Command(BaseCommand):
    help = "Run one trade cycle of a symbol, with the agent's signal or an explicit one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", required=True, help="Exchange symbol, e.g. BTCUSDT.")
        parser.add_argument(
            "--signal",
            choices=["long", "short", "flat", "hold"],
            help="Use this signal instead of asking the symbol's agent.",
        )

    def handle(self, *args: object, **options: object) -> None:
        symbol = symbol_get(name=str(options["symbol"]))
        if symbol is None:
            raise CommandError(f"Unknown symbol {options['symbol']!r}.")
        if not symbol.enabled:
            raise CommandError(f"{symbol.name} is disabled; enable it in the admin first.")
        signal = None
        if options["signal"]:
            action = str(options["signal"]).upper()
            signal = Decision(
                action=action, reason=f"manual run_cycle --signal {options['signal']}"
            )
        outcome = trade_cycle_run(symbol_id=symbol.pk, signal=signal)
        if outcome.failed:
            raise CommandError(str(outcome))
        self.stdout.write(str(outcome))
