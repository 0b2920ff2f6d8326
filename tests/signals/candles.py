"""Candle series for agent tests: hand-shaped ones, and the shipped paper candle files."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from exchange.gateway import Candle

T0 = datetime(2026, 1, 5, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def one_minute_candles(closes: Sequence[Decimal | int], *, start: datetime = T0) -> list[Candle]:
    """Flat one-minute candles at these closes, the first opening at ``start``."""
    return [
        Candle(
            open_time=start + i * MINUTE,
            open=Decimal(c),
            high=Decimal(c),
            low=Decimal(c),
            close=Decimal(c),
            volume=Decimal(1),
        )
        for i, c in enumerate(closes)
    ]


def closed_at(candles: Sequence[Candle]) -> datetime:
    """The moment the last candle closes: every candle of the list counts as closed."""
    return candles[-1].open_time + MINUTE


# Forty minutes down one by one, then nine up by two: EMA9 crosses above EMA21 on the last
# candle with RSI14 at 64.5.
V_TURN = [200 - i for i in range(40)] + [160 + 2 * j for j in range(1, 10)]
# The mirror image: EMA9 crosses below EMA21 on the last candle with RSI14 at 35.5.
A_TURN = [100 + i for i in range(40)] + [140 - 2 * j for j in range(1, 10)]


def shipped_candles(symbol: str) -> list[Candle]:
    """The paper exchange's generated one-minute candles of a symbol (paper/candles/)."""
    from paper import candles as candle_files

    rows = candle_files.load(candle_files.CANDLE_DIR / f"{symbol}-1m-generated.csv.gz")
    return [
        Candle(
            open_time=datetime.fromtimestamp(r.open_time / 1000, tz=UTC),
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            volume=r.volume,
        )
        for r in rows
    ]
