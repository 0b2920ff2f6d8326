"""``python manage.py guard [--once] [--quiet]``: the guard pass, once or every 5 s until Ctrl-C.

Run as a process of its own (Procfile ``guard``, ``make run``), the guard never waits behind a
trade cycle for a worker slot and keeps running while the broker is down.
"""

from __future__ import annotations

import os
import socket
import time

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from core.services import lease_hold, lease_let_go
from monitoring.loop import run_every
from trading.gateway import exchange_backoff_until
from trading.guard import PROCESS_LEASE_NAME, guard_pass

# A failed pass is tried again this many times, this long apart, before the next interval.
RETRIES_AFTER_FAILED_PASS = 4
RETRY_PAUSE_SECONDS = 0.5


class Command(BaseCommand):
    help = (
        "Run the guard: every position on the exchange keeps its stop-loss and take-profit, "
        "closes are recorded. Once with --once, else every --interval seconds until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
        parser.add_argument(
            "--interval", type=float, default=5.0, help="Seconds between passes (default 5)."
        )
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="Print a pass's summary only when it acted or failed (its log lines still go "
            "out), not every 5 s.",
        )

    def handle(
        self, *args: object, once: bool, interval: float, quiet: bool, **options: object
    ) -> None:
        def one_pass() -> str:
            # A long-lived process: a connection the database dropped is replaced, not reused.
            close_old_connections()
            lease_hold(name=PROCESS_LEASE_NAME, owner=owner, seconds=interval * 3)
            report = guard_pass()
            for _ in range(RETRIES_AFTER_FAILED_PASS):
                if not report.error:
                    break
                # The exchange failed this pass (a burst of 503s on a read, a 429): a position
                # may be naked right now, so try again as soon as allowed, not a whole interval
                # later; after a 429 or a ban, only once the wait it asked for is over.
                pause = RETRY_PAUSE_SECONDS
                paused_until = exchange_backoff_until()
                if paused_until is not None:
                    pause = (paused_until - timezone.now()).total_seconds() + RETRY_PAUSE_SECONDS
                if pause > interval:
                    break
                time.sleep(pause)
                close_old_connections()
                report = guard_pass()
            if quiet and not (report.actions or report.failed or report.error):
                return ""
            return report.summary()

        owner = f"{socket.gethostname()[:30]}:{os.getpid()}"
        try:
            run_every(seconds=interval, once=once, run=one_pass, write=self._write)
        finally:
            # Beat's guard task takes over at once after a clean stop, not after the hold ends.
            lease_let_go(name=PROCESS_LEASE_NAME, owner=owner)

    def _write(self, line: str) -> None:
        if line:
            self.stdout.write(line)
