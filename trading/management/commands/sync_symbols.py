"""Read every known symbol's filters from the exchange and save what changed.

``manage.py sync_symbols`` prints, per symbol, each changed field as ``field: old → new`` (or
"unchanged"); the changes are in the rule history with the actor "sync_symbols". A symbol whose
new leverage bracket is below its profile's leverage is saved disabled, with an alert.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import ArenaError
from trading.symbol_sync import symbol_sync_filters


class Command(BaseCommand):
    help = "Sync symbol filters (exchangeInfo + leverageBracket) from the configured exchange."

    def handle(self, *args: object, **options: object) -> None:
        try:
            results = symbol_sync_filters(actor="sync_symbols")
        except ArenaError as e:
            raise CommandError(f"Exchange unreadable, nothing changed: {e}") from e
        for result in results:
            self.stdout.write(str(result))
        changed = sum(1 for r in results if r.changes)
        failed = [r.symbol for r in results if r.error]
        self.stdout.write(f"{changed} of {len(results)} symbols changed.")
        for result in results:
            if result.conflict:
                self.stderr.write(f"{result.symbol} DISABLED: {result.conflict}")
        if failed:
            raise CommandError(f"Not updated (see above): {', '.join(failed)}")
