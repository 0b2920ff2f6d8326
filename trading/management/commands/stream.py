"""Run the user data stream: fills and closes recorded the moment the exchange reports them."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from exchange.stream import KEEP_ALIVE_SECONDS, user_data_stream_factory
from trading.stream_runner import StreamRunner, StreamSettings


class Command(BaseCommand):
    help = (
        "Run the user data stream until stopped: each fill into the ledger, each close recorded "
        "as it happens, a REST reconcile after every gap. The guard stays the backstop."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reconcile-seconds",
            type=float,
            default=60.0,
            help="REST reconcile this often even without a gap (default 60)",
        )
        parser.add_argument(
            "--keep-alive-seconds",
            type=float,
            default=KEEP_ALIVE_SECONDS,
            help="keep the listen key alive this often (default 20 min; keys live 60)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        runner = StreamRunner(
            stream_factory=user_data_stream_factory(
                keep_alive_seconds=options["keep_alive_seconds"]
            ),
            settings=StreamSettings(reconcile_seconds=options["reconcile_seconds"]),
        )
        self.stdout.write("user data stream starting; Ctrl-C stops")
        asyncio.run(self._run(runner))
        self.stdout.write("user data stream stopped")

    async def _run(self, runner: StreamRunner) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runner.run(stop)
