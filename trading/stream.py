"""What the user data stream changes in the books: each fill into the ledger, each close recorded
the moment its fill arrives, and a REST reconcile of every gap.

Every write goes through the services the guard uses (``fills.fill_record``,
``position_record_exchange_close``), so a duplicated or late event, or one the guard saw first,
changes nothing twice: the trade id is unique and a closed position is not closed again. The
exchange stays the truth: a close is recorded only once REST shows the position flat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from core.errors import ArenaError
from exchange.gateway import ExchangeGateway
from exchange.stream import StreamFill
from trading import fills
from trading import services as order_path
from trading.models import Order, Position, StreamState

logger = logging.getLogger(__name__)

ACTOR = "stream"
STREAM_NAME = "user-data"
# The error the process stores when it stops on purpose: down, and not coming back by itself.
STOPPED = "stopped"
# Our orders whose fill closes a position on the exchange without the order path recording it.
EXCHANGE_CLOSES = (Order.Purpose.STOP_LOSS, Order.Purpose.TAKE_PROFIT, Order.Purpose.LIQUIDATION)


@dataclass
class FillApplied:
    """What one streamed fill changed."""

    recorded: bool = False  # a new row in the ledger
    closed: Position | None = None  # the close it recorded
    note: str = ""


@dataclass
class GapReconciled:
    """What a REST reconcile of a gap found and recorded."""

    positions_checked: int = 0
    closed: list[Position] = field(default_factory=list)
    books_completed: int = 0
    error: str = ""


def stream_fill_apply(*, event: StreamFill, gateway: ExchangeGateway) -> FillApplied:
    """Record a streamed fill on its order; when it is the fill of a stop-loss, take-profit or
    the exchange's own close and the position is flat on the exchange, record the close."""
    applied = FillApplied()
    order = _order_of(event)
    if order is not None:
        rate = Decimal(1)
        if event.fill.commission_asset != fills.USDT:
            rate = gateway.fetch_mark_price(symbol=f"{event.fill.commission_asset}{fills.USDT}")
        _, applied.recorded = fills.fill_record(order=order, trade=event.fill, usdt_rate=rate)
    position = _position_closed_by(event=event, order=order)
    if position is None:
        return applied
    outcome = order_path.position_record_exchange_close(
        position=position, gateway=gateway, actor=ACTOR
    )
    if outcome.status == order_path.CloseOutcome.CLOSED:
        applied.closed = outcome.position or position
    else:
        # Still open on the exchange (a partial fill), already recorded, or busy: the guard and
        # the next reconcile look again.
        applied.note = str(outcome)
    return applied


def _order_of(event: StreamFill) -> Order | None:
    """Our order row for the fill: by client id, else by the exchange's order id (the market
    order a stop-loss or take-profit became)."""
    symbol = event.fill.symbol
    if event.client_order_id:
        order = Order.objects.filter(client_order_id=event.client_order_id[:36]).first()
        if order is not None and order.symbol.name == symbol:
            return order
    exchange_id = event.fill.order_id
    return (
        Order.objects.filter(symbol__name=symbol, exchange_order_id=exchange_id).first()
        or Order.objects.filter(symbol__name=symbol, triggered_order_id=exchange_id).first()
    )


def _position_closed_by(*, event: StreamFill, order: Order | None) -> Position | None:
    """The open position this fill may have closed, or None when it cannot have."""
    if order is not None:
        if order.purpose not in EXCHANGE_CLOSES or order.position_id is None:
            return None  # entries and the order path's own closes are recorded by the order path
        position = order.position
    else:
        # Not one of ours: the exchange's own close (liquidation, auto-deleveraging) or an order
        # placed by hand, or a fired exit of ours whose market order carries another client id.
        # Only a reduce-only or close-position fill, or a liquidation, can close a position.
        if not (event.reduce_only or event.close_position or event.order_type == "LIQUIDATION"):
            return None
        position = (
            Position.objects.filter(symbol__name=event.fill.symbol, status=Position.Status.OPEN)
            .order_by("-id")
            .first()
        )
    if position is None or position.status != Position.Status.OPEN:
        return None
    return position


def stream_gap_reconcile(*, gateway: ExchangeGateway) -> GapReconciled:
    """After a gap in the stream: record every close the exchange shows that we have not
    recorded (one positions read) and finish the closes still waiting for their fills."""
    report = GapReconciled()
    positions = list(Position.objects.filter(status=Position.Status.OPEN).select_related("symbol"))
    report.positions_checked = len(positions)
    try:
        if positions:
            on_exchange = {p.symbol for p in gateway.fetch_positions()}
            for position in positions:
                if position.symbol.name in on_exchange:
                    continue
                outcome = order_path.position_record_exchange_close(
                    position=position, gateway=gateway, actor=ACTOR
                )
                if outcome.status == order_path.CloseOutcome.CLOSED:
                    report.closed.append(outcome.position or position)
        report.books_completed = len(fills.positions_books_complete(gateway=gateway, actor=ACTOR))
    except ArenaError as e:
        report.error = f"{type(e).__name__}: {e}"
        logger.warning("[Stream] reconcile of the gap failed: %s", e)
    return report


# --------------------------------------------------------------------------- its state
def stream_state_report(
    *,
    connected: bool,
    last_event_at: datetime | None = None,
    lag_ms: int | None = None,
    events: int | None = None,
    reconciles: int | None = None,
    last_reconcile_at: datetime | None = None,
    error: str = "",
    now: datetime | None = None,
) -> StreamState:
    """Store the stream's state; ``since`` moves only when it connects or disconnects."""
    now = now or timezone.now()
    state, created = StreamState.objects.get_or_create(
        name=STREAM_NAME,
        defaults={"connected": connected, "since": now, "updated_at": now},
    )
    changes: dict[str, object] = {"updated_at": now, "error": error[:255]}
    if created or state.connected != connected:
        changes.update(connected=connected, since=now)
    if last_event_at is not None:
        changes["last_event_at"] = last_event_at
    if lag_ms is not None:
        changes["lag_ms"] = lag_ms
    if events is not None:
        changes["events"] = events
    if reconciles is not None:
        changes["reconciles"] = reconciles
    if last_reconcile_at is not None:
        changes["last_reconcile_at"] = last_reconcile_at
    StreamState.objects.filter(pk=state.pk).update(**changes)
    for name, value in changes.items():
        setattr(state, name, value)
    return state
