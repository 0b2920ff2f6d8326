"""1-minute candles: Binance's kline CSV layout, a loader, and a seeded generator.

The generator makes the default candle set shipped in ``paper/candles/`` (see its README):
synthetic, never real market data. Run ``python -m paper.candles generate`` to rebuild it; the same
seed gives the same files.

Model: log-returns with GARCH(1,1)-like volatility clustering, a slowly switching trend regime,
rare jumps, and small gaps between one candle's close and the next one's open. Prices are rounded
to each symbol's tick; volume follows the absolute move.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import math
import random
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from paper.symbols import (
    DEFAULT_PRICES,
    REAL_PRICES,
    SYNTHETIC_TEMPLATE,
    is_synthetic,
    round_to_tick,
    symbols,
)

CANDLE_DIR = Path(__file__).resolve().parent / "candles"
MINUTE_MS = 60_000
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
# Per-minute volatility of the log price, roughly as each market moves.
VOLATILITY = {
    "BTCUSDT": 0.0009,
    "ETHUSDT": 0.0012,
    "BNBUSDT": 0.0010,
    "XRPUSDT": 0.0015,
    "DOGEUSDT": 0.0018,
    "ADAUSDT": 0.0016,
}


@dataclass(frozen=True)
class Candle:
    """One kline row as Binance publishes it."""

    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    close_time: int
    quote_volume: Decimal
    count: int
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal

    def to_binance(self) -> list[object]:
        return [
            self.open_time,
            f"{self.open:f}",
            f"{self.high:f}",
            f"{self.low:f}",
            f"{self.close:f}",
            f"{self.volume:f}",
            self.close_time,
            f"{self.quote_volume:f}",
            self.count,
            f"{self.taker_buy_volume:f}",
            f"{self.taker_buy_quote_volume:f}",
            "0",
        ]

    def path(self) -> list[Decimal]:
        """The prices the candle walks: open, then the nearer extreme, the other, close."""
        if self.close >= self.open:
            return [self.open, self.low, self.high, self.close]
        return [self.open, self.high, self.low, self.close]


def parse_rows(text: str) -> list[Candle]:
    """Parse kline CSV text (with or without Binance's header line)."""
    rows: list[Candle] = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip().lstrip("-").isdigit():
            continue
        rows.append(
            Candle(
                open_time=int(row[0]),
                open=Decimal(row[1]),
                high=Decimal(row[2]),
                low=Decimal(row[3]),
                close=Decimal(row[4]),
                volume=Decimal(row[5]),
                close_time=int(row[6]),
                quote_volume=Decimal(row[7]),
                count=int(row[8]),
                taker_buy_volume=Decimal(row[9]),
                taker_buy_quote_volume=Decimal(row[10]),
            )
        )
    return rows


def load(path: Path) -> list[Candle]:
    """Load a kline file: ``.csv``, ``.csv.gz`` or Binance's ``.zip`` of one CSV."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return parse_rows(archive.read(archive.namelist()[0]).decode())
    if path.suffix == ".gz":
        return parse_rows(gzip.decompress(path.read_bytes()).decode())
    return parse_rows(path.read_text())


def load_dir(directory: Path = CANDLE_DIR) -> dict[str, list[Candle]]:
    """Load the 1-minute kline files of a directory, by symbol.

    A symbol may have many files (``BTCUSDT-1m-2026-01-05.csv``, one per day, as
    ``download_candles`` writes them, or Binance's ``.zip``/``.gz`` ones): they are joined in
    time order, a minute present in two files is kept once, and missing minutes (an exchange
    outage, a day not downloaded) become flat candles at the last close, so every symbol walks
    the same minute grid. Symbols are trimmed to the window they all cover, so a replay plays
    them in step. Synthetic symbols without a file of their own get the template's candles,
    scaled to their start price (:func:`scaled_copy`), when the directory has the template's
    file.
    """
    files: dict[str, list[Path]] = {}
    for path in sorted(directory.glob("*-1m*")):
        name = path.name.split("-", 1)[0]
        if name in symbols():
            files.setdefault(name, []).append(path)
    result = {
        name: _joined([row for path in paths for row in load(path)])
        for name, paths in files.items()
    }
    result = _common_window({k: v for k, v in result.items() if v})
    template = result.get(SYNTHETIC_TEMPLATE)
    if template:
        for name in symbols():
            if is_synthetic(name) and name not in result:
                result[name] = scaled_copy(template, name)
    return result


def _joined(rows: list[Candle]) -> list[Candle]:
    """Candles in time order, each minute once, gaps filled with flat candles."""
    by_minute: dict[int, Candle] = {}
    for candle in rows:
        by_minute.setdefault(candle.open_time - candle.open_time % MINUTE_MS, candle)
    joined: list[Candle] = []
    for minute in sorted(by_minute):
        if joined:
            previous = joined[-1]
            for missing in range(previous.open_time + MINUTE_MS, minute, MINUTE_MS):
                joined.append(_flat(previous.close, missing))
        joined.append(by_minute[minute])
    return joined


def _flat(price: Decimal, open_time: int) -> Candle:
    """A minute without trades: no move, no volume."""
    zero = Decimal(0)
    return Candle(
        open_time=open_time,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=zero,
        close_time=open_time + MINUTE_MS - 1,
        quote_volume=zero,
        count=0,
        taker_buy_volume=zero,
        taker_buy_quote_volume=zero,
    )


def _common_window(series: dict[str, list[Candle]]) -> dict[str, list[Candle]]:
    """Trim every symbol to the minutes all of them cover."""
    if len(series) < 2:
        return series
    start = max(rows[0].open_time for rows in series.values())
    end = min(rows[-1].open_time for rows in series.values())
    return {k: [c for c in rows if start <= c.open_time <= end] for k, rows in series.items()}


def scaled_copy(candles: list[Candle], symbol: str) -> list[Candle]:
    """The template's candles with prices scaled to ``symbol``'s start price, on its tick.

    The shape (and so every move in a replay) is the template's: synthetic symbols move together.
    """
    sym = symbols()[symbol]
    factor = DEFAULT_PRICES[symbol] / REAL_PRICES[SYNTHETIC_TEMPLATE]
    result: list[Candle] = []
    for c in candles:
        o, h, lo, cl = (
            round_to_tick(v * factor, sym.tick) for v in (c.open, c.high, c.low, c.close)
        )
        result.append(
            Candle(
                open_time=c.open_time,
                open=o,
                high=max(h, o, cl),
                low=min(lo, o, cl),
                close=cl,
                volume=c.volume,
                close_time=c.close_time,
                quote_volume=(c.quote_volume * factor).quantize(Decimal("0.01")),
                count=c.count,
                taker_buy_volume=c.taker_buy_volume,
                taker_buy_quote_volume=(c.taker_buy_quote_volume * factor).quantize(
                    Decimal("0.01")
                ),
            )
        )
    return result


def generate(symbol: str, *, start_ms: int, minutes: int, seed: int) -> list[Candle]:
    """Generate ``minutes`` candles for ``symbol`` from its default start price."""
    sym = symbols()[symbol]
    rng = random.Random(f"{seed}-{symbol}")
    base_vol = VOLATILITY.get(symbol, 0.0012)
    price = float(DEFAULT_PRICES[symbol])
    variance = base_vol**2
    trend = 0.0
    candles: list[Candle] = []
    for i in range(minutes):
        if rng.random() < 1 / 240:
            # A new trend regime every few hours on average, up or down, sometimes flat.
            trend = rng.choice((-1, 0, 0, 1)) * base_vol * rng.uniform(0.05, 0.25)
        shock = rng.gauss(0, 1)
        # GARCH(1,1)-like clustering around the base variance.
        variance = 0.05 * base_vol**2 + 0.85 * variance + 0.10 * variance * shock**2
        sigma = math.sqrt(variance)
        ret = trend + sigma * shock
        if rng.random() < 1 / 1500:
            ret += rng.choice((-1, 1)) * sigma * rng.uniform(6, 12)  # a rare jump
        gap = rng.gauss(0, sigma * 0.1)
        open_ = price * math.exp(gap)
        close = open_ * math.exp(ret)
        wick = abs(rng.gauss(0, sigma * 0.6))
        high = max(open_, close) * math.exp(abs(rng.gauss(0, sigma * 0.5)) + wick * 0.3)
        low = min(open_, close) * math.exp(-abs(rng.gauss(0, sigma * 0.5)) - wick * 0.3)
        o, h, lo, c = (round_to_tick(Decimal(repr(x)), sym.tick) for x in (open_, high, low, close))
        h, lo = max(h, o, c), min(lo, o, c)
        activity = 1 + abs(ret) / base_vol
        base_qty = 250_000 / float(DEFAULT_PRICES[symbol])
        volume = Decimal(repr(base_qty * activity * rng.uniform(0.3, 1.7))).quantize(sym.step)
        taker = (volume * Decimal(repr(rng.uniform(0.35, 0.65)))).quantize(sym.step)
        mid = (o + c) / 2
        open_time = start_ms + i * MINUTE_MS
        candles.append(
            Candle(
                open_time=open_time,
                open=o,
                high=h,
                low=lo,
                close=c,
                volume=volume,
                close_time=open_time + MINUTE_MS - 1,
                quote_volume=(volume * mid).quantize(Decimal("0.01")),
                count=int(200 * activity * rng.uniform(0.5, 1.5)),
                taker_buy_volume=taker,
                taker_buy_quote_volume=(taker * mid).quantize(Decimal("0.01")),
            )
        )
        price = float(c)
    return candles


def write(path: Path, candles: list[Candle]) -> None:
    """Write candles as gzip'd kline CSV with Binance's header line."""
    lines = [HEADER] + [",".join(str(v) for v in c.to_binance()) for c in candles]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paper.candles")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the default synthetic candle set")
    gen.add_argument("--out", type=Path, default=CANDLE_DIR)
    gen.add_argument("--start", default="2025-01-06", help="UTC start date (YYYY-MM-DD)")
    gen.add_argument("--minutes", type=int, default=2 * 1440)
    gen.add_argument("--seed", type=int, default=20250106)
    gen.add_argument("--symbols", nargs="*", default=list(VOLATILITY))
    args = parser.parse_args(argv)
    start = datetime.strptime(args.start, "%Y-%m-%d").replace(tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    args.out.mkdir(parents=True, exist_ok=True)
    for symbol in args.symbols:
        candles = generate(symbol, start_ms=start_ms, minutes=args.minutes, seed=args.seed)
        path = args.out / f"{symbol}-1m-generated.csv.gz"
        write(path, candles)
        print(f"{path}: {len(candles)} candles, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
