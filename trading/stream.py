"""What the user data stream changes in the books: each fill into the ledger, each close recorded
the moment its fill arrives, and a REST reconcile of every gap.

Every write goes through the services the guard uses (``fills.fill_record``,
``position_record_exchange_close``), so a duplicated or late event, or one the guard saw first,
changes nothing twice: the trade id is unique and a closed position is not closed again. The
exchange stays the truth: a close is recorded once its own fills, as the exchange reported them,
show the position flat (every order's fills in the ledger, as much out as in), else only once
REST shows it flat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import ArenaError
from exchange.gateway import ExchangeGateway, order_status_parse
from exchange.stream import StreamAlgo, StreamEvent, StreamFill
from trading import fills
from trading import services as order_path
from trading.locks import db_write_lock
from trading.models import Order, Position, StreamState
from trading.transitions import order_move_allowed, order_transition

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
        if order.purpose in EXCHANGE_CLOSES:
            _exit_progress(order=order, event=event)
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


def _exit_progress(*, order: Order, event: StreamFill) -> None:
    """Store what the fill says of the exit it belongs to: its cumulative quantity and average
    price, FILLED once whole, and for a conditional order the id of the order it became. Then
    the close needs no lookup of its own: the ledger and this row tell it
    (``fills.position_books_settled``). Only forward: a late event never lowers the quantity."""
    if event.order_filled_quantity is None:
        return
    changes: dict[str, object] = {
        "filled_quantity": event.order_filled_quantity,
        "average_price": event.order_average_price,
        "updated_at": timezone.now(),
    }
    if order.is_conditional and not order.triggered_order_id:
        changes["triggered_order_id"] = event.fill.order_id[:40]
    later = Q(filled_quantity__isnull=True) | Q(filled_quantity__lt=event.order_filled_quantity)
    with db_write_lock, transaction.atomic():
        moved = Order.objects.filter(later, pk=order.pk).update(**changes)
        if moved and event.order_status == "FILLED":
            order.refresh_from_db(fields=["status"])
            if order_move_allowed(order.status, Order.Status.FILLED):
                order_transition(
                    order, Order.Status.FILLED, reason="filled (stream)", actor=ACTOR, follow=True
                )


def stream_algo_apply(*, event: StreamAlgo) -> bool:
    """Store what became of one of our conditional orders (ALGO_UPDATE); True when it changed
    anything.

    TRIGGERED (or FINISHED) tells at once which regular order the stop or take-profit became,
    so that order's fills are found on it, whatever client id they carry; CANCELED, EXPIRED and
    REJECTED end it. Conditional updates only move an order forward: a duplicated or late
    update, or one the order path or a fill already accounted for, changes nothing. NEW is the
    order path's to record (from its own answer).
    """
    status = order_status_parse(event.status)
    if status in (Order.Status.UNKNOWN, Order.Status.OPEN) or not event.client_algo_id:
        return False
    rows = Order.objects.filter(
        client_order_id=event.client_algo_id[:36], is_conditional=True, symbol__name=event.symbol
    )
    changed = 0
    with db_write_lock, transaction.atomic():
        if event.actual_order_id:
            changed += rows.filter(triggered_order_id="").update(
                triggered_order_id=event.actual_order_id[:40], updated_at=timezone.now()
            )
        for order in rows.filter(status__in=Order.ACTIVE_STATUSES):
            if order_move_allowed(order.status, status):
                changed += order_transition(
                    order, status, reason=f"{event.status} (stream)", actor=ACTOR, follow=True
                )
    return bool(changed)


def stream_event_apply(*, event: StreamEvent, gateway: ExchangeGateway) -> FillApplied:
    """Apply one event of the stream (a fill or an algo update)."""
    if isinstance(event, StreamAlgo):
        return FillApplied(note="algo update applied" if stream_algo_apply(event=event) else "")
    return stream_fill_apply(event=event, gateway=gateway)


def _order_of(event: StreamFill) -> Order | None:
    """Our order row for the fill: by client id, else by the exchange's order id (the market
    order a stop-loss or take-profit became)."""
    orders = Order.objects.filter(symbol__name=event.fill.symbol).select_related(
        "symbol", "position"
    )
    if event.client_order_id:
        order = orders.filter(client_order_id=event.client_order_id[:36]).first()
        if order is not None:
            return order
    exchange_id = event.fill.order_id
    return (
        orders.filter(exchange_order_id=exchange_id).first()
        or orders.filter(triggered_order_id=exchange_id).first()
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
                    # Its fills the stream missed (its entry's, while it was down): then its
                    # close is told by the ledger when its exit's fill arrives.
                    fills.position_finished_fills_record(position=position, gateway=gateway)
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
