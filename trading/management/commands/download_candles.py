"""Save candles from the configured exchange's public klines as Binance kline CSV files.

``manage.py download_candles BTCUSDT --days 3 [--interval 1m] [--out data/candles]`` writes one
``BTCUSDT-1m-YYYY-MM-DD.csv`` per UTC day, in the layout of data.binance.vision.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ArenaError
from exchange.candles import INTERVAL_MS, candles_download
from trading.gateway import exchange_gateway


class Command(BaseCommand):
    help = "Download candles (paged klines) as Binance kline CSV files, one per UTC day."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbol", help="Exchange symbol, e.g. BTCUSDT.")
        parser.add_argument("--days", type=int, required=True, help="How many days back.")
        parser.add_argument("--interval", default="1m", choices=sorted(INTERVAL_MS))
        parser.add_argument("--out", default="data/candles", help="Directory for the files.")

    def handle(self, *args: object, **options: object) -> None:
        days = int(options["days"])
        if not 1 <= days <= 365:
            raise CommandError("--days must be between 1 and 365.")
        symbol = str(options["symbol"]).upper()
        try:
            paths = candles_download(
                symbol=symbol,
                days=days,
                interval=str(options["interval"]),
                out_dir=Path(str(options["out"])),
                gateway=exchange_gateway(),
                progress=self._progress,
            )
        except ArenaError as e:
            raise CommandError(f"Download failed: {e}") from e
        if not paths:
            raise CommandError(f"The exchange returned no candles for {symbol}.")
        for path in paths:
            self.stdout.write(f"wrote {path}")

    def _progress(self, done: int, expected: int) -> None:
        share = min(100, done * 100 // expected) if expected else 100
        self.stdout.write(f"  {done} / {expected} candles ({share} %)")
        self.stdout.flush()
