"""Turn trading on or off from the shell: ``manage.py trading --pause --reason TEXT``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.management.commands._operator import shell_actor
from trading.models import TradingSwitch
from trading.switch import trading_switch_set


class Command(BaseCommand):
    help = (
        "The kill switch. --pause stops every new entry at once (closes, stops and cancels still "
        "go through) and needs --reason; --resume lets the bot open positions again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--pause", action="store_true", help="Halt new entries.")
        action.add_argument("--resume", action="store_true", help="Allow new entries again.")
        parser.add_argument("--reason", default="", help="Why (required with --pause).")

    def handle(self, *args, **options) -> None:
        enabled = bool(options["resume"])
        reason = options["reason"].strip()
        if not enabled and not reason:
            raise CommandError("--pause needs --reason TEXT: say why trading is halted.")
        if enabled and not reason:
            reason = "resumed from the shell"
        actor = shell_actor()
        switch = TradingSwitch.objects.filter(id=1).first()
        before = switch.enabled if switch else True
        switch = trading_switch_set(enabled=enabled, reason=reason, actor=actor)
        if before == enabled:
            self.stdout.write(
                f"Trading already {'enabled' if enabled else 'halted'} "
                f"({switch.reason or 'no reason'}, by {switch.changed_by or 'nobody'}): "
                "nothing changed."
            )
            return
        state = "ENABLED" if switch.enabled else "HALTED"
        self.stdout.write(self.style.SUCCESS(f"Trading {state} by {actor}: {switch.reason}"))
