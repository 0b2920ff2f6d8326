"""Historical candles downloaded through the gateway as Binance kline files, the format the
paper exchange replays."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from exchange.gateway import (
    ExchangeGateway,
)

logger = logging.getLogger(__name__)


KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)


KLINE_PAGE = 1500  # the most Binance returns per klines request


INTERVAL_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


def candles_download(
    *,
    symbol: str,
    days: int,
    interval: str,
    out_dir: Path,
    gateway: ExchangeGateway,
    now: datetime | None = None,
    page_size: int = KLINE_PAGE,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Save the last ``days`` of closed candles as Binance kline files, one CSV per UTC day
    (``BTCUSDT-1m-2026-01-05.csv``, with the header of data.binance.vision's newer files).
    ``progress(candles so far, candles expected)`` is called after each page."""
    if interval not in INTERVAL_MS:
        raise ValueError(f"interval must be one of {', '.join(INTERVAL_MS)}")
    step = INTERVAL_MS[interval]
    end_ms = int((now or datetime.now(tz=UTC)).timestamp() * 1000)
    start_ms = end_ms - days * 86_400_000
    rows: list[list] = []
    cursor = start_ms
    while cursor < end_ms:
        page = gateway.fetch_kline_rows(
            symbol=symbol, interval=interval, limit=page_size, start_ms=cursor, end_ms=end_ms
        )
        # Only closed candles: the current one would change after it is written.
        page = [row for row in page if int(row[6]) < end_ms]
        if not page:
            break
        rows.extend(page)
        cursor = int(page[-1][0]) + step
        if progress is not None:
            progress(len(rows), (end_ms - start_ms) // step)
    by_day: dict[str, list[list]] = {}
    for row in rows:
        day = datetime.fromtimestamp(int(row[0]) / 1000, tz=UTC).date().isoformat()
        by_day.setdefault(day, []).append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for day, day_rows in sorted(by_day.items()):
        path = out_dir / f"{symbol}-{interval}-{day}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            handle.write(KLINE_HEADER + "\n")
            writer.writerows(day_rows)
        written.append(path)
    return written
