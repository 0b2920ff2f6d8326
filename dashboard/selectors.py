"""Reads for the dashboard: equity chart, positions with marks, closes, heartbeats, the user
data stream, alerts.

Nothing here writes, and nothing asks the exchange: marks and unrealized PnL come from the
guard's last read, so the page is safe to reload during an incident, by any number of people.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from core.formatting import money_text, quantity_text
from core.models import Heartbeat, MonitoringSettings
from dashboard.models import EquitySnapshot
from monitoring.models import Alert
from monitoring.sentinel import STREAM_DOWN_AFTER
from trading.comparison import SL, TP, exit_on_exchange
from trading.exchange_view import LastExchangeView, ViewOrder, ViewPosition, exchange_view_last
from trading.models import Position, StreamState, Symbol, TradingSwitch
from trading.stream import STOPPED

# An SVG path of more points than pixels draws nothing more; thin the series to this many.
CHART_MAX_POINTS = 720
# The sentinel runs every few minutes; three missed passes is worth a red mark.
SENTINEL_STALE_SECONDS = 15 * 60


# --- equity chart ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EquityChart:
    """A line chart of equity, laid out for an SVG of ``width`` x ``height`` user units."""

    width: int
    height: int
    path: str  # the ``d`` attribute of the line; empty when there is nothing to draw
    point_count: int
    start: datetime | None
    end: datetime | None
    low: Decimal | None
    high: Decimal | None
    last: Decimal | None
    first: Decimal | None
    # Horizontal grid lines: (y in user units, label).
    grid: tuple[tuple[float, str], ...] = ()
    plot_left: int = 0
    plot_right: int = 0
    plot_top: int = 0
    plot_bottom: int = 0

    @property
    def change(self) -> Decimal | None:
        if self.first is None or self.last is None:
            return None
        return self.last - self.first


def equity_snapshots(*, since: datetime) -> list[EquitySnapshot]:
    """Snapshots from ``since`` on, oldest first."""
    return list(EquitySnapshot.objects.filter(time__gte=since).order_by("time", "id"))


def equity_chart(
    *, snapshots: list[EquitySnapshot], width: int = 900, height: int = 260
) -> EquityChart:
    """Lay out ``snapshots`` (oldest first) as an SVG line; time on x, equity on y."""
    left, right, top, bottom = 70, width - 10, 10, height - 24
    empty = EquityChart(
        width, height, "", 0, None, None, None, None, None, None, (), left, right, top, bottom
    )
    if not snapshots:
        return empty
    points = _thin(snapshots, CHART_MAX_POINTS)
    low = min(s.equity for s in points)
    high = max(s.equity for s in points)
    start, end = points[0].time, points[-1].time
    # Floats only for pixel positions; the labels keep the Decimal values.
    span_seconds = (end - start).total_seconds() or 1.0
    span_value = float(high - low) or 1.0

    def x(t: datetime) -> float:
        return left + (t - start).total_seconds() / span_seconds * (right - left)

    def y(v: Decimal) -> float:
        if high == low:
            return (top + bottom) / 2
        return bottom - float(v - low) / span_value * (bottom - top)

    coords = [(x(s.time), y(s.equity)) for s in points]
    if len(coords) == 1:
        # One sample is a level, not a point: draw it across the chart.
        coords = [(left, coords[0][1]), (right, coords[0][1])]
    path = "M" + " L".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
    middle = (low + high) / 2
    grid = tuple((y(v), _money(v)) for v in ([low, middle, high] if high != low else [low]))
    return EquityChart(
        width=width,
        height=height,
        path=path,
        point_count=len(points),
        start=start,
        end=end,
        low=low,
        high=high,
        last=points[-1].equity,
        first=points[0].equity,
        grid=grid,
        plot_left=left,
        plot_right=right,
        plot_top=top,
        plot_bottom=bottom,
    )


def _thin(snapshots: list[EquitySnapshot], limit: int) -> list[EquitySnapshot]:
    if len(snapshots) <= limit:
        return snapshots
    step = -(-len(snapshots) // limit)
    thinned = snapshots[::step]
    if thinned[-1] is not snapshots[-1]:
        thinned.append(snapshots[-1])
    return thinned


def _money(value: Decimal) -> str:
    return money_text(value, grouped=True)


# --- positions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PositionRow:
    """An open position as the database knows it, with the exchange's mark and PnL as the guard
    last read them."""

    symbol: str
    side: str
    status: str
    quantity: Decimal
    entry_price: Decimal | None
    mark_price: Decimal | None
    take_profit_price: Decimal | None
    stop_loss_price: Decimal | None
    unrealized_pnl: Decimal | None
    leverage: int | None
    opened_at: datetime | None
    position_id: int | None
    note: str = ""
    filters: Symbol | None = None  # for formatting: tick and step
    stop_on_exchange: bool = False
    take_profit_on_exchange: bool = False


@dataclass(frozen=True)
class OpenPositions:
    rows: list[PositionRow]
    taken_at: datetime | None  # when the guard read the exchange; None: never yet
    age_seconds: int | None
    stale: bool  # the read is older than the guard's heartbeat limit

    @property
    def unrealized_pnl(self) -> Decimal | None:
        known = [r.unrealized_pnl for r in self.rows if r.unrealized_pnl is not None]
        return sum(known, Decimal(0)) if known else None


def open_positions_with_marks(
    *, view: LastExchangeView | None = None, now: datetime | None = None
) -> OpenPositions:
    """Open positions of the database joined with the guard's last read of the exchange.

    No request to the exchange: any number of page views cost the bot no request weight. The
    read's age comes back with the rows so the page can say how fresh the marks are.
    """
    view = view if view is not None else exchange_view_last()
    now = now or timezone.now()
    positions = list(
        Position.objects.filter(status__in=Position.OPEN_STATUSES)
        .select_related("symbol")
        .order_by("symbol__name")
    )
    on_exchange = dict(view.positions)
    orders: dict[str, list[ViewOrder]] = defaultdict(list)
    for order in view.orders:
        orders[order.symbol].append(order)

    def protected(live: ViewPosition | None, kind: str) -> bool:
        # The one judgement the guard and the sentinel use: an exit of the closing side.
        return live is not None and exit_on_exchange(
            held=live, orders=orders.get(live.symbol, ()), kind=kind
        )

    known = view.taken_at is not None
    rows = []
    for position in positions:
        name = position.symbol.name
        live = on_exchange.pop(name, None)
        note = ""
        if known and live is None:
            note = "not on the exchange at the last read"
        elif live is not None and (
            live.side != position.side or live.quantity != position.quantity
        ):
            note = f"exchange holds {live.side} {quantity_text(live.quantity, position.symbol)}"
        rows.append(
            PositionRow(
                symbol=name,
                side=position.side,
                status=position.status,
                quantity=position.quantity,
                entry_price=position.entry_price,
                mark_price=live.mark_price if live else None,
                take_profit_price=position.take_profit_price,
                stop_loss_price=position.stop_loss_price,
                unrealized_pnl=live.unrealized_pnl if live else None,
                leverage=position.leverage,
                opened_at=position.opened_at,
                position_id=position.id,
                note=note,
                filters=position.symbol,
                stop_on_exchange=protected(live, SL),
                take_profit_on_exchange=protected(live, TP),
            )
        )
    symbols = Symbol.objects.in_bulk(list(on_exchange), field_name="name") if on_exchange else {}
    for live in sorted(on_exchange.values(), key=lambda p: p.symbol):
        rows.append(
            PositionRow(
                symbol=live.symbol,
                side=live.side,
                status="UNKNOWN",
                quantity=live.quantity,
                entry_price=live.entry_price,
                mark_price=live.mark_price,
                take_profit_price=None,
                stop_loss_price=None,
                unrealized_pnl=live.unrealized_pnl,
                leverage=live.leverage,
                opened_at=None,
                position_id=None,
                note="on the exchange, no record here",
                filters=symbols.get(live.symbol),
                stop_on_exchange=protected(live, SL),
                take_profit_on_exchange=protected(live, TP),
            )
        )
    age = view.age_seconds(now=now)
    return OpenPositions(
        rows=rows,
        taken_at=view.taken_at,
        age_seconds=age,
        stale=age is None or age > _guard_stale_seconds(),
    )


def _guard_stale_seconds() -> int:
    rules = MonitoringSettings.objects.filter(id=1).first() or MonitoringSettings()
    return rules.heartbeat_stale_seconds


def recent_closes(*, limit: int = 20) -> list[Position]:
    """The latest closed positions, newest first."""
    return list(
        Position.objects.filter(status=Position.Status.CLOSED)
        .select_related("symbol")
        .order_by("-closed_at", "-id")[:limit]
    )


# --- kill switch, heartbeats, alerts ---------------------------------------------------------
def trading_switch_current() -> TradingSwitch:
    """The kill switch as stored; an unsaved default (enabled) before anyone touched it."""
    return TradingSwitch.objects.filter(id=1).first() or TradingSwitch(id=1)


@dataclass(frozen=True)
class HeartbeatRow:
    process: str
    finished_at: datetime | None
    age_seconds: int | None
    duration_ms: int | None
    ok: bool
    error: str
    stale: bool


def heartbeats_latest(*, now: datetime | None = None) -> list[HeartbeatRow]:
    """The latest guard and sentinel pass."""
    now = now or timezone.now()
    rules = MonitoringSettings.objects.filter(id=1).first() or MonitoringSettings()
    limits = {"guard": rules.heartbeat_stale_seconds, "sentinel": SENTINEL_STALE_SECONDS}
    rows = []
    for process, stale_after in limits.items():
        beat = Heartbeat.objects.filter(process=process).order_by("-finished_at").first()
        if beat is None:
            rows.append(HeartbeatRow(process, None, None, None, False, "no pass yet", True))
            continue
        age = int((now - beat.finished_at).total_seconds())
        rows.append(
            HeartbeatRow(
                process=process,
                finished_at=beat.finished_at,
                age_seconds=age,
                duration_ms=beat.duration_ms,
                ok=beat.ok,
                error=beat.error,
                stale=age > stale_after,
            )
        )
    return rows


@dataclass(frozen=True)
class StreamStateRow:
    """The user data stream as its process last reported it, judged against the sentinel's
    limit: ``state`` is connected, reconnecting, down or never ran."""

    state: str
    since: datetime | None = None  # connected or disconnected since
    reported_at: datetime | None = None
    report_age_seconds: int | None = None
    last_event_at: datetime | None = None
    last_event_age_seconds: int | None = None
    lag_ms: int | None = None  # the latest event: the exchange's event time to its receipt
    events: int = 0
    reconciles: int = 0
    last_reconcile_at: datetime | None = None
    last_reconcile_age_seconds: int | None = None
    error: str = ""
    stale: bool = False  # no report for longer than the sentinel lets the stream be down

    @property
    def bad(self) -> bool:
        return self.state == STREAM_DOWN


STREAM_CONNECTED = "connected"
STREAM_RECONNECTING = "reconnecting"
STREAM_DOWN = "down"
STREAM_NEVER_RAN = "never ran"


def stream_state_latest(*, now: datetime | None = None) -> StreamStateRow:
    """The stream's state for the dashboard.

    Down once it has been disconnected, or silent, for longer than the sentinel's
    ``STREAM_DOWN_AFTER`` (the same limit its alert uses), or when it was stopped; before that,
    a disconnected stream is reconnecting with backoff. Never ran: no process ever reported,
    and the guard's passes record every close without it.
    """
    now = now or timezone.now()
    row = StreamState.objects.order_by("id").first()
    if row is None:
        return StreamStateRow(state=STREAM_NEVER_RAN)

    def age(moment: datetime | None) -> int | None:
        return None if moment is None else int((now - moment).total_seconds())

    stale = now - row.updated_at > STREAM_DOWN_AFTER
    if row.connected and not stale:
        state = STREAM_CONNECTED
    elif stale or row.error == STOPPED or now - row.since > STREAM_DOWN_AFTER:
        state = STREAM_DOWN
    else:
        state = STREAM_RECONNECTING
    return StreamStateRow(
        state=state,
        since=row.since,
        reported_at=row.updated_at,
        report_age_seconds=age(row.updated_at),
        last_event_at=row.last_event_at,
        last_event_age_seconds=age(row.last_event_at),
        lag_ms=row.lag_ms,
        events=row.events,
        reconciles=row.reconciles,
        last_reconcile_at=row.last_reconcile_at,
        last_reconcile_age_seconds=age(row.last_reconcile_at),
        error=row.error,
        stale=stale,
    )


def alerts_open(*, limit: int = 20) -> tuple[list[Alert], int]:
    """Unacknowledged alerts (newest first, at most ``limit``) and their count."""
    pending = Alert.objects.filter(acknowledged_at__isnull=True).select_related("symbol")
    return list(pending.order_by("-created_at", "-id")[:limit]), pending.count()


def chart_since(*, hours: int, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(hours=hours)
