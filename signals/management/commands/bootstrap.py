"""Prepare a fresh local installation: default rules once, and a development admin login."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from risk.services import rule_save
from signals.schedules import cycle_schedules_sync
from trading.models import Strategy, Symbol

# A local arena's trade cycles run this often, so trades show within a couple of minutes.
LOCAL_CYCLE_SECONDS = 30


class Command(BaseCommand):
    help = (
        "Load the default rules when the database has none (never overwrites edits) and, "
        "with DEBUG on, create a local admin login and print it once."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--replay-speed",
            type=int,
            default=None,
            help="The local paper exchange replays candles this many times faster than real "
            f"time: fresh local rules then cycle every {LOCAL_CYCLE_SECONDS} s and look for "
            "crossovers over the candles replayed in between.",
        )

    def handle(self, *args, **options) -> None:
        if Symbol.objects.exists():
            self.stdout.write("Rules already present: defaults not reloaded.")
        else:
            call_command("loaddata", "defaults", verbosity=0)
            self.stdout.write("Default rules loaded (BTCUSDT and BNBUSDT enabled, 2x, 30 %).")
            speed = options["replay_speed"]
            if speed is not None:
                self._tune_to_replay(speed)
        cycle_schedules_sync()
        self._ensure_development_admin()

    def _tune_to_replay(self, speed: int) -> None:
        if speed < 1:
            raise CommandError("--replay-speed must be at least 1.")
        candles_per_cycle = max(1, LOCAL_CYCLE_SECONDS * speed // 60)
        for strategy in Strategy.objects.all():
            strategy.interval_seconds = LOCAL_CYCLE_SECONDS
            strategy.parameters = {**strategy.parameters, "cross_lookback": candles_per_cycle}
            rule_save(instance=strategy, actor="bootstrap")
        self.stdout.write(
            f"Local replay at {speed}x: cycles every {LOCAL_CYCLE_SECONDS} s, each looking at "
            f"the {candles_per_cycle} one-minute candles replayed since the last."
        )

    def _ensure_development_admin(self) -> None:
        user_model = get_user_model()
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no development admin created.")
            return
        if user_model.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(
            self.style.WARNING(
                "Development admin created (shown once): "
                f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}/admin/ "
                f"user admin / password {password}"
            )
        )
