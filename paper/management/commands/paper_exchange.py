"""``python manage.py paper_exchange``: run the paper exchange until Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from paper.candles import load_dir
from paper.runtime import PaperExchange
from paper.symbols import set_extra_symbols
from paper.testing import extra_symbols_from_env


class Command(BaseCommand):
    help = "Run the paper exchange: a Binance USDT-M futures simulator for ccxt binanceusdm."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8700)
        parser.add_argument(
            "--stream-port",
            type=int,
            default=None,
            help="port of the user data stream (WebSocket); default --port + 1",
        )
        parser.add_argument("--feed", choices=("replay", "static"), default="static")
        parser.add_argument(
            "--speed", type=float, default=1.0, help="replay speed, times real time"
        )
        parser.add_argument(
            "--state", type=Path, default=None, help="JSON file restored at start, kept saved"
        )
        parser.add_argument(
            "--candles",
            type=Path,
            default=None,
            help=(
                "folder of Binance 1-minute kline files to replay and serve (several days per"
                " symbol, as download_candles writes them); default the shipped generated set"
            ),
        )
        parser.add_argument(
            "--extra-symbols",
            type=int,
            default=None,
            help=(
                "synthetic symbols SYN001USDT... (clones of ADAUSDT) to list besides the six real"
                " ones; default PAPER_EXTRA_SYMBOLS or 0"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        extra = options["extra_symbols"]
        extra = extra_symbols_from_env() if extra is None else extra
        set_extra_symbols(extra)
        candle_dir = options["candles"]
        if candle_dir is not None:
            if not candle_dir.is_dir():
                raise CommandError(f"--candles {candle_dir}: no such folder")
            loaded = load_dir(candle_dir)
            if not loaded:
                raise CommandError(
                    f"--candles {candle_dir}: no 1-minute kline files of a known symbol "
                    "(expected names like BTCUSDT-1m-2026-01-05.csv)"
                )
            self.stdout.write(
                "candles: "
                + ", ".join(f"{name} {len(rows)} minutes" for name, rows in sorted(loaded.items()))
            )
        exchange = PaperExchange(
            candle_dir=candle_dir,
            host=options["host"],
            port=options["port"],
            feed=options["feed"],
            speed=options["speed"],
            state_file=options["state"],
            stream_port=options["stream_port"],
        ).start()
        self.stdout.write(
            f"paper exchange on {exchange.url}, user data stream on {exchange.stream_url}"
            f" (feed {options['feed']}, speed"
            f" {options['speed']}, state {options['state'] or 'in memory'}, {extra} synthetic"
            " symbol(s)); Ctrl-C stops"
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            exchange.stop()
            self.stdout.write("paper exchange stopped")
