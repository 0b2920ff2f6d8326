"""The price around one position as an SVG laid out on the server, with its levels marked.

Candles come from the exchange once and are stored (``PositionCandles``): a page view reads the
database; only an open position's candles are refreshed, at most once a minute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from core.errors import ArenaError
from core.formatting import price_text
from dashboard.models import PositionCandles
from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from trading.gateway import exchange_gateway
from trading.models import Position

logger = logging.getLogger(__name__)

# Intervals tried in order: the first that spans the trade in at most MAX_CANDLES candles.
INTERVALS = (("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("4h", 14400))
MAX_CANDLES = 240
MARGIN = timedelta(minutes=30)  # price before the entry and after the close
REFRESH_OPEN = timedelta(seconds=60)


@dataclass(frozen=True)
class CandleBar:
    x: float
    open_y: float
    close_y: float
    high_y: float
    low_y: float
    rising: bool


@dataclass(frozen=True)
class Level:
    name: str  # entry, stop-loss, take-profit, exit
    css: str
    y: float
    label: str


@dataclass(frozen=True)
class TimeMark:
    name: str
    x: float


@dataclass(frozen=True)
class PositionChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    bar_width: float
    bars: tuple[CandleBar, ...]
    levels: tuple[Level, ...]
    times: tuple[TimeMark, ...]
    interval: str
    start: datetime | None
    end: datetime | None
    note: str = ""


def position_chart(
    *,
    position: Position,
    gateway: ExchangeGateway | None = None,
    now: datetime | None = None,
    width: int = 900,
    height: int = 320,
) -> PositionChart:
    """The chart of ``position``: stored candles (fetched when missing or stale), its levels."""
    stored, note = position_candles(position=position, gateway=gateway, now=now)
    rows = stored.rows if stored is not None else []
    interval = stored.interval if stored is not None else ""
    return chart_layout(
        position=position, rows=rows, interval=interval, width=width, height=height, note=note
    )


def position_candles(
    *, position: Position, gateway: ExchangeGateway | None = None, now: datetime | None = None
) -> tuple[PositionCandles | None, str]:
    """The stored candles of ``position``, fetched first when none are stored, when an open
    position's are older than a minute, or once after the close. A failed fetch keeps what is
    stored and says why."""
    now = now or timezone.now()
    stored = PositionCandles.objects.filter(position=position).first()
    if stored is not None and (
        stored.final or (position.is_open and now - stored.fetched_at < REFRESH_OPEN)
    ):
        return stored, ""
    if position.opened_at is None:
        return stored, ""
    end = (position.closed_at + MARGIN) if position.closed_at else now
    start = position.opened_at - MARGIN
    interval, _ = _interval_for(end - start)
    try:
        # A page must answer in seconds: a short retry budget.
        gateway = gateway or exchange_gateway(retry_policy=RetryPolicy(max_total_seconds=2.0))
        raw = gateway.fetch_kline_rows(
            symbol=position.symbol.name,
            interval=interval,
            limit=MAX_CANDLES + 2,
            start_ms=int(start.timestamp() * 1000),
            end_ms=int(end.timestamp() * 1000),
        )
        if not raw:
            # A replaying exchange keeps its own clock: then the latest candles are the trade's.
            raw = gateway.fetch_kline_rows(
                symbol=position.symbol.name, interval=interval, limit=MAX_CANDLES
            )
    except (ArenaError, OSError) as exc:
        logger.warning("position %s: candles unavailable: %s", position.pk, exc)
        return stored, f"candles unavailable: {exc}"
    rows = [[int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])] for r in raw]
    final = position.closed_at is not None and now >= position.closed_at + MARGIN
    stored, _ = PositionCandles.objects.update_or_create(
        position=position,
        defaults={"interval": interval, "rows": rows, "fetched_at": now, "final": final},
    )
    return stored, ""


def _interval_for(span: timedelta) -> tuple[str, int]:
    for name, seconds in INTERVALS:
        if span.total_seconds() / seconds <= MAX_CANDLES:
            return name, seconds
    return INTERVALS[-1]


def chart_layout(
    *,
    position: Position,
    rows: list[list],
    interval: str,
    width: int = 900,
    height: int = 320,
    note: str = "",
) -> PositionChart:
    """Lay out candles (``[ms, o, h, l, c]``) and the position's levels for an SVG."""
    left, right, top, bottom = 80, width - 150, 10, height - 24
    symbol = position.symbol
    levels_wanted = [
        ("entry", "entry", position.entry_price),
        ("stop-loss", "stop", position.stop_loss_price),
        ("take-profit", "take-profit", position.take_profit_price),
        ("exit", "exit", position.exit_price),
    ]
    prices = [Decimal(v) for row in rows for v in (row[2], row[3])]
    prices += [v for _, _, v in levels_wanted if v is not None]
    if not prices:
        return PositionChart(
            width, height, left, right, top, bottom, 0, (), (), (), interval, None, None, note
        )
    low, high = min(prices), max(prices)
    pad = (high - low) * Decimal("0.05") or high * Decimal("0.001") or Decimal(1)
    low, high = low - pad, high + pad
    span = float(high - low)

    def y(value: Decimal) -> float:
        return round(bottom - float(value - low) / span * (bottom - top), 1)

    slot = (right - left) / max(len(rows), 1)
    bars = tuple(
        CandleBar(
            x=round(left + slot * (i + 0.5), 1),
            open_y=y(Decimal(row[1])),
            close_y=y(Decimal(row[4])),
            high_y=y(Decimal(row[2])),
            low_y=y(Decimal(row[3])),
            rising=Decimal(row[4]) >= Decimal(row[1]),
        )
        for i, row in enumerate(rows)
    )
    levels = tuple(
        Level(name, css, y(value), f"{name} {price_text(value, symbol)}")
        for name, css, value in levels_wanted
        if value is not None
    )
    start = end = None
    times: list[TimeMark] = []
    if rows:
        start = datetime.fromtimestamp(rows[0][0] / 1000, tz=UTC)
        end = datetime.fromtimestamp(rows[-1][0] / 1000, tz=UTC)
        seconds = dict(INTERVALS).get(interval, 60)
        for name, moment in (("entry", position.opened_at), ("exit", position.closed_at)):
            if moment is None:
                continue
            index = (moment - start).total_seconds() / seconds
            if 0 <= index <= len(rows):
                times.append(TimeMark(name, round(left + slot * index, 1)))
    return PositionChart(
        width=width,
        height=height,
        plot_left=left,
        plot_right=right,
        plot_top=top,
        plot_bottom=bottom,
        bar_width=round(max(slot * 0.6, 1.0), 1),
        bars=bars,
        levels=levels,
        times=tuple(times),
        interval=interval,
        start=start,
        end=end,
        note=note,
    )
