"""The fills ledger: every exchange trade recorded once, on its own order and position.

``fill_record`` is the one door into the ledger: the close path, the guard, reconcile (and later
a user data stream) all write through it, and the trade id (unique per symbol) makes a second
write of the same trade a no-op. Fills are read by exchange order id — for a fired stop-loss or
take-profit by the id of the market order it became — never by time window, so a position never
absorbs the fill of the position before or after it on the same symbol.

A position's realized PnL, fees, exit price and close time are sums of its own fills
(``position_books``). When its fills cannot be read yet, the close is recorded with
``awaiting_fills`` and ``positions_books_complete`` (called by the guard and reconcile) finishes
it later; the daily loss limit blocks entries meanwhile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from core.errors import ArenaError
from exchange.gateway import EXCHANGE_CLOSE_PREFIXES, ExchangeGateway, ExchangeOrder
from exchange.gateway import Fill as ExchangeFill
from exchange.rounding import round_price_nearest
from trading.income import liquidation_clearance_record
from trading.locks import db_write_lock
from trading.models import Fill, Income, Order, Position, TradeEvent
from trading.selectors import position_exit_orders
from trading.transitions import order_create, order_transition

logger = logging.getLogger(__name__)

ENTRY_SIDE = {"LONG": "BUY", "SHORT": "SELL"}
USDT = "USDT"
# Our order statuses whose fills may exist on the exchange.
MAY_HAVE_FILLED = (
    Order.Status.SENT,
    Order.Status.OPEN,
    Order.Status.FILLED,
    Order.Status.TRIGGERED,
    Order.Status.UNKNOWN,
    Order.Status.CANCELED,  # a partially filled order may be cancelled
    Order.Status.EXPIRED,  # an IOC order expires with what it filled
)
# Our order statuses after which an order fills no more.
FINISHED = (Order.Status.FILLED, Order.Status.CANCELED, Order.Status.EXPIRED)


class FillsUnreadable(ArenaError):
    """The exchange could not tell a position's fills now: its close waits for them (the guard
    and reconcile try again); the daily loss limit blocks entries meanwhile."""


@dataclass(frozen=True)
class PositionBooks:
    """A position's numbers, as sums of its own fills."""

    realized_pnl: Decimal  # net: the exchange's realized PnL (and clearance) minus every fee
    fees: Decimal  # USDT (fees paid in another asset converted at the recorded rate)
    exit_price: Decimal | None  # quantity-weighted over the exit fills, on the tick
    closed_at: datetime | None  # the exchange time of the last fill
    entry_quantity: Decimal
    exit_quantity: Decimal
    fired_exit: str | None = None  # SL or TP: the exit whose fills closed it (settled books)

    @property
    def flat(self) -> bool:
        return self.entry_quantity > 0 and self.entry_quantity == self.exit_quantity


# --------------------------------------------------------------------------- the one door
def fill_record(
    *, order: Order, trade: ExchangeFill, usdt_rate: Decimal = Decimal(1)
) -> tuple[Fill, bool]:
    """Record one exchange trade on ``order`` (and its position); (fill, created).

    Idempotent: a trade already recorded (same symbol and trade id) is returned unchanged, so
    every reader of the exchange may write what it saw.
    """
    if trade.trade_id <= 0:
        raise ValueError(f"trade without an id: {trade}")
    existing = Fill.objects.filter(symbol_id=order.symbol_id, trade_id=trade.trade_id).first()
    if existing is not None:
        return existing, False
    rate = Decimal(1) if trade.commission_asset == USDT else usdt_rate
    try:
        with db_write_lock, transaction.atomic():
            fill = Fill.objects.create(
                symbol_id=order.symbol_id,
                order=order,
                position_id=order.position_id,
                trade_id=trade.trade_id,
                exchange_order_id=trade.order_id,
                side=trade.side,
                quantity=trade.quantity,
                price=trade.price,
                realized_pnl=trade.realized_pnl,
                commission=trade.commission,
                commission_asset=trade.commission_asset,
                commission_usdt_rate=rate,
                commission_usdt=trade.commission * rate,
                maker=trade.maker,
                time=trade.time,
            )
    except IntegrityError:
        # Another writer recorded the same trade between our read and our insert.
        return Fill.objects.get(symbol_id=order.symbol_id, trade_id=trade.trade_id), False
    return fill, True


def order_fills_record(
    *, order: Order, exchange_order_id: str, gateway: ExchangeGateway, rates: dict[str, Decimal]
) -> list[Fill]:
    """Read one exchange order's trades (1 request) and record each; return the order's fills.

    Also stores the fill quantity and average price on the order row (for a fired exit, the
    market order's). Raises ``ArenaError`` when the trades cannot be read.
    """
    trades = gateway.fetch_order_fills(symbol=order.symbol.name, order_id=exchange_order_id)
    for trade in trades:
        rate = _usdt_rate(asset=trade.commission_asset, gateway=gateway, rates=rates)
        fill_record(order=order, trade=trade, usdt_rate=rate)
    fills = list(order.fills.all())
    quantity = sum((f.quantity for f in fills), Decimal(0))
    if quantity:
        average = sum((f.price * f.quantity for f in fills), Decimal(0)) / quantity
        changes: dict[str, object] = {"filled_quantity": quantity, "average_price": average}
        if order.is_conditional and order.status in (Order.Status.TRIGGERED, Order.Status.OPEN):
            order_transition(
                order, Order.Status.FILLED, reason="its fills read", fields=changes, follow=True
            )
        else:
            with db_write_lock:
                Order.objects.filter(pk=order.pk).update(**changes, updated_at=timezone.now())
            for name, value in changes.items():
                setattr(order, name, value)
    return fills


def _usdt_rate(*, asset: str, gateway: ExchangeGateway, rates: dict[str, Decimal]) -> Decimal:
    """USDT per unit of ``asset``: 1 for USDT, else the mark price of ``<asset>USDT`` now (a fee
    paid in BNB is recorded in BNB and converted explicitly at this rate)."""
    if asset == USDT:
        return Decimal(1)
    if asset not in rates:
        rates[asset] = gateway.fetch_mark_price(symbol=f"{asset}{USDT}")
    return rates[asset]


# --------------------------------------------------------------------------- exits
def exits_settle(*, position: Position, gateway: ExchangeGateway) -> None:
    """Learn what became of the position's stop-loss and take-profit, cancelling only those
    still working, and store each one's status as the exchange reports it.

    One lookup per exit still active here; a cancel only for an exit the exchange says is
    working (an exit already finished is never cancelled again: no ``-2011``). A fired exit
    keeps the id of the market order it became, whose trades are its fills.
    """

    for order in position_exit_orders(position=position):
        try:
            found = gateway.fetch_order(
                symbol=position.symbol.name,
                client_order_id=order.client_order_id,
                conditional=order.is_conditional,
            )
            if found is not None and found.our_status == Order.Status.OPEN:
                _exit_cancel(order=order, position=position, gateway=gateway)
                continue
        except ArenaError as e:
            logger.warning("could not settle %s after the close: %s", order.client_order_id, e)
            continue
        _exit_found_record(order, found)


def exits_cancel(*, position: Position, gateway: ExchangeGateway) -> None:
    """Cancel the exits of a position already recorded closed (one request each): the other
    exit of a fired pair. Only when the exchange no longer has one is it looked up, to learn
    what became of it. A failure is logged: the guard cancels orders left without a position."""
    for order in position_exit_orders(position=position):
        try:
            _exit_cancel(order=order, position=position, gateway=gateway)
        except ArenaError as e:
            logger.warning("could not cancel %s after the close: %s", order.client_order_id, e)


def _exit_cancel(*, order: Order, position: Position, gateway: ExchangeGateway) -> None:
    """Cancel an exit; when the exchange no longer has it open (finished meanwhile), ask what
    it became and store that."""
    if gateway.cancel_order(
        symbol=position.symbol.name,
        client_order_id=order.client_order_id,
        conditional=order.is_conditional,
    ):
        _exit_status_set(order, Order.Status.CANCELED)
        return
    found = gateway.fetch_order(
        symbol=position.symbol.name,
        client_order_id=order.client_order_id,
        conditional=order.is_conditional,
    )
    _exit_found_record(order, found)


def _exit_found_record(order: Order, found: ExchangeOrder | None) -> None:
    """Store what a lookup found of an exit: gone from the exchange, or its status there."""
    if found is None:
        _exit_status_set(order, Order.Status.EXPIRED, note="unknown to the exchange")
    else:
        exit_apply(order=order, found=found)


def exit_apply(*, order: Order, found: ExchangeOrder) -> None:
    """Store an exit's status as the exchange reports it, with the id of the market order a
    fired exit became."""
    changes: dict[str, object] = {}
    if found.exchange_order_id:
        changes["exchange_order_id"] = found.exchange_order_id[:40]
    if found.actual_order_id:
        changes["triggered_order_id"] = found.actual_order_id[:40]
    if not order.is_conditional:
        changes["filled_quantity"] = found.filled_quantity
        changes["average_price"] = found.average_price
    order_transition(
        order,
        found.our_status,
        reason=f"the exchange says {found.status}",
        fields=changes,
        follow=True,
    )


def _exit_status_set(order: Order, status: str, *, note: str = "") -> None:
    order_transition(
        order,
        status,
        reason=note or "cancelled",
        fields={"error_message": note} if note else None,
        follow=True,
    )


def fired_exit(*, position: Position) -> str | None:
    """SL or TP when that exit of ours fired (after ``exits_settle``); None otherwise."""
    fired = (
        position.orders.filter(
            purpose__in=(Order.Purpose.STOP_LOSS, Order.Purpose.TAKE_PROFIT),
            status__in=(Order.Status.TRIGGERED, Order.Status.FILLED),
        )
        .order_by("id")
        .first()
    )
    return fired.purpose if fired is not None else None


# --------------------------------------------------------------------------- a position's fills
def position_fills_collect(*, position: Position, gateway: ExchangeGateway) -> PositionBooks:
    """Read and record the fills of every order of ``position`` by exchange order id, then the
    exchange's own closes (liquidation) of what our orders do not account for.

    Raises ``FillsUnreadable`` when the exchange cannot be read or its trades do not (yet) add
    up to a closed position; what was read is recorded all the same.
    """
    rates: dict[str, Decimal] = {}
    try:
        position_orders_fills_record(position=position, gateway=gateway, rates=rates)
        books = position_books(position=position)
        if books.entry_quantity > books.exit_quantity:
            _exchange_closes_record(position=position, books=books, gateway=gateway, rates=rates)
        if not position.incomes.filter(income_type=Income.Type.INSURANCE_CLEAR).exists():
            liquidation_clearance_record(position=position, gateway=gateway)
        books = position_books(position=position)
    except ArenaError as e:
        raise FillsUnreadable(f"fills of {position} unreadable: {e}") from e
    if not books.flat:
        raise FillsUnreadable(
            f"fills of {position} incomplete: {_plain(books.entry_quantity)} in, "
            f"{_plain(books.exit_quantity)} out"
        )
    return books


def position_orders_fills_record(
    *, position: Position, gateway: ExchangeGateway, rates: dict[str, Decimal] | None = None
) -> None:
    """Record the trades of each order of ``position`` not yet fully in the ledger (one
    request per such order; none for a finished order whose fills are all recorded). Raises
    ``ArenaError`` when the exchange cannot be read."""
    rates = {} if rates is None else rates
    for order in position.orders.select_related("symbol").order_by("id"):
        exchange_id = _traded_order_id(order=order, gateway=gateway)
        if not exchange_id:
            continue
        recorded = sum((f.quantity for f in order.fills.all()), Decimal(0))
        finished = order.status in (
            Order.Status.FILLED,
            Order.Status.CANCELED,
            Order.Status.EXPIRED,
        )
        if recorded and recorded == order.filled_quantity and finished:
            continue  # every trade of a finished order is in the ledger already
        order_fills_record(order=order, exchange_order_id=exchange_id, gateway=gateway, rates=rates)


def position_finished_fills_record(
    *, position: Position, gateway: ExchangeGateway, rates: dict[str, Decimal] | None = None
) -> int:
    """Record the trades of the position's finished orders that are not wholly in the ledger
    (one request each, none when all are; one query): what the user data stream missed while
    it was down, so the position's close can be told from the ledger. Exits still working are
    not looked up. Returns how many orders were read; raises ``ArenaError``."""
    rates = {} if rates is None else rates
    orders = (
        position.orders.filter(status__in=FINISHED, filled_quantity__gt=0)
        .select_related("symbol")
        .annotate(recorded=Sum("fills__quantity"))
    )
    read = 0
    for order in orders:
        exchange_id = order.triggered_order_id if order.is_conditional else order.exchange_order_id
        if not exchange_id or order.recorded == order.filled_quantity:
            continue
        order_fills_record(order=order, exchange_order_id=exchange_id, gateway=gateway, rates=rates)
        read += 1
    return read


def _traded_order_id(*, order: Order, gateway: ExchangeGateway) -> str:
    """The exchange order id whose trades are this order's fills ("" when it cannot have any).

    An order whose answer was lost is looked up by its client id first; a conditional order's
    fills carry the id of the market order it became.
    """
    if order.status in (Order.Status.INTENT, Order.Status.REJECTED):
        return ""
    if order.purpose == Order.Purpose.LIQUIDATION or not order.sent_at:
        # Placed by the exchange or a person (recorded from the exchange): its id is known.
        return order.exchange_order_id
    if order.is_conditional:
        if order.triggered_order_id:
            return order.triggered_order_id
        if order.status in (Order.Status.CANCELED, Order.Status.EXPIRED):
            return ""
        found = gateway.fetch_order(
            symbol=order.symbol.name, client_order_id=order.client_order_id, conditional=True
        )
        if found is None:
            _exit_status_set(order, Order.Status.EXPIRED, note="unknown to the exchange")
            return ""
        exit_apply(order=order, found=found)
        return order.triggered_order_id
    if order.status not in MAY_HAVE_FILLED:
        return ""
    if not order.exchange_order_id or order.status in (Order.Status.SENT, Order.Status.UNKNOWN):
        found = gateway.fetch_order(
            symbol=order.symbol.name, client_order_id=order.client_order_id, conditional=False
        )
        if found is None:
            return ""
        exit_apply(order=order, found=found)
    if order.status in (Order.Status.CANCELED, Order.Status.EXPIRED) and not order.filled_quantity:
        return ""
    return order.exchange_order_id


def _exchange_closes_record(
    *, position: Position, books: PositionBooks, gateway: ExchangeGateway, rates: dict
) -> None:
    """Record the closes of this position that no order of ours accounts for: the exchange's
    own (liquidation, auto-deleveraging) or a person's on the exchange. They are the first
    filled exit-side orders unknown here after the position's entry and before the next
    position's, read by order id (GET allOrders?orderId=entry), until the quantity is met."""
    entry = (
        position.orders.filter(purpose=Order.Purpose.ENTRY)
        .exclude(exchange_order_id="")
        .order_by("id")
        .first()
    )
    if entry is None:
        return
    start = int(entry.exchange_order_id)
    later_entry = (
        Order.objects.filter(
            symbol_id=position.symbol_id, purpose=Order.Purpose.ENTRY, position__id__gt=position.id
        )
        .exclude(exchange_order_id="")
        .order_by("id")
        .values_list("exchange_order_id", flat=True)
        .first()
    )
    stop = int(later_entry) if later_entry else None
    candidates = [
        found
        for found in gateway.fetch_orders_from(symbol=position.symbol.name, order_id=str(start))
        if int(found.exchange_order_id) > start
        and (stop is None or int(found.exchange_order_id) < stop)
        and found.side != ENTRY_SIDE[position.side]
        and found.filled_quantity > 0
    ]
    ours = set(
        Order.objects.filter(
            client_order_id__in=[c.client_order_id for c in candidates]
        ).values_list("client_order_id", flat=True)
    )
    triggered = set(
        Order.objects.filter(symbol_id=position.symbol_id)
        .exclude(triggered_order_id="")
        .values_list("triggered_order_id", flat=True)
    )
    missing = books.entry_quantity - books.exit_quantity
    for found in candidates:
        if found.client_order_id in ours or found.exchange_order_id in triggered:
            continue
        order = _exchange_close_order(position=position, found=found)
        order_fills_record(
            order=order, exchange_order_id=found.exchange_order_id, gateway=gateway, rates=rates
        )
        missing -= found.filled_quantity
        if missing <= 0:
            return


def _exchange_close_order(*, position: Position, found: ExchangeOrder) -> Order:
    """Our row for a close of this position placed by the exchange (its liquidation) or by a
    person on the exchange, so its fills have an order to belong to."""
    by_exchange = found.client_order_id.startswith(EXCHANGE_CLOSE_PREFIXES)
    client_order_id = found.client_order_id[:36]
    existing = Order.objects.filter(client_order_id=client_order_id).first()
    if existing is not None:
        return existing
    try:
        return order_create(
            status=Order.Status.FILLED,
            reason="placed by the exchange" if by_exchange else "placed on the exchange by hand",
            actor="fills",
            client_order_id=client_order_id,
            symbol_id=position.symbol_id,
            position=position,
            purpose=Order.Purpose.LIQUIDATION if by_exchange else Order.Purpose.CLOSE,
            side=found.side,
            order_type=found.order_type[:24],
            quantity=found.quantity,
            reduce_only=True,
            exchange_order_id=found.exchange_order_id[:40],
            filled_quantity=found.filled_quantity,
            average_price=found.average_price,
            error_message="" if by_exchange else "placed on the exchange, not by the bot",
        )
    except IntegrityError:
        # Another reader of the same close recorded it between our read and our insert.
        return Order.objects.get(client_order_id=client_order_id)


def position_books(
    *, position: Position, fills: list[Fill] | None = None, liquidated: bool = True
) -> PositionBooks:
    """Sum the position's recorded fills (``fills`` when already read; no request).
    ``liquidated`` False: no clearance fee to look for (it is booked only on a liquidation)."""
    fills = list(position.fills.all()) if fills is None else fills
    entry_side = ENTRY_SIDE[position.side]
    entries = [f for f in fills if f.side == entry_side]
    exits = [f for f in fills if f.side != entry_side]
    fees = sum((f.commission_usdt for f in fills), Decimal(0))
    # A liquidation's clearance fee is part of what the position lost.
    clearance = (
        position.incomes.filter(income_type=Income.Type.INSURANCE_CLEAR) if liquidated else []
    )
    realized = sum((f.realized_pnl for f in fills), Decimal(0)) + sum(
        (i.amount for i in clearance), Decimal(0)
    )
    exit_quantity = sum((f.quantity for f in exits), Decimal(0))
    exit_price = None
    if exit_quantity:
        average = sum((f.price * f.quantity for f in exits), Decimal(0)) / exit_quantity
        exit_price = round_price_nearest(average, position.symbol.filters)
    return PositionBooks(
        realized_pnl=realized - fees,
        fees=fees,
        exit_price=exit_price,
        closed_at=max((f.time for f in fills), default=None),
        entry_quantity=sum((f.quantity for f in entries), Decimal(0)),
        exit_quantity=exit_quantity,
    )


def position_books_settled(*, position: Position) -> PositionBooks | None:
    """The position's books when its recorded fills alone show it closed (no request, three
    queries); None when the exchange must be asked.

    The user data stream writes each fill, with its order's cumulative quantity, the moment it
    happens: once every order with fills is finished and wholly in the ledger, and as much went
    out as came in, the position is flat and these are its numbers. A liquidation is left to the
    exchange (its clearance fee is read over REST).
    """
    recorded = list(position.fills.select_related("order"))
    by_order: dict[int, Decimal] = {}
    orders: dict[int, Order] = {}
    for fill in recorded:
        by_order[fill.order_id] = by_order.get(fill.order_id, Decimal(0)) + fill.quantity
        orders[fill.order_id] = fill.order
    if not by_order:
        return None
    for order in orders.values():
        if (
            order.purpose == Order.Purpose.LIQUIDATION
            or order.status not in FINISHED
            or order.filled_quantity != by_order[order.id]
        ):
            return None  # more fills may come, or some are not in the ledger yet
    books = position_books(position=position, fills=recorded, liquidated=False)
    if not books.flat:
        return None
    fired = sorted(
        (o.id, o.purpose)
        for o in orders.values()
        if o.purpose in (Order.Purpose.STOP_LOSS, Order.Purpose.TAKE_PROFIT)
    )
    return replace(books, fired_exit=fired[0][1] if fired else None)


def position_books_read(*, position: Position, gateway: ExchangeGateway) -> PositionBooks | None:
    """The position's books from its fills, reading what is missing; None when the fills cannot
    be read (yet)."""
    try:
        return position_fills_collect(position=position, gateway=gateway)
    except FillsUnreadable as e:
        logger.warning("%s; the close waits for them", e)
        return None


def position_books_knowable(*, position: Position) -> bool:
    """Whether fills can ever tell this position's numbers: it has an entry order of ours (a
    position adopted from the exchange has none, and its close keeps an unknown PnL)."""
    return position.orders.filter(purpose=Order.Purpose.ENTRY).exists()


# --------------------------------------------------------------------------- completing later
def positions_books_complete(*, gateway: ExchangeGateway, actor: str = "guard") -> list[Position]:
    """Complete the closes recorded while their fills were unreadable (for the guard and
    reconcile). One query when there is none; otherwise the requests of reading their fills.
    Returns the positions completed."""
    completed = []
    for position in Position.objects.filter(awaiting_fills=True).select_related("symbol"):
        try:
            books = position_fills_collect(position=position, gateway=gateway)
        except FillsUnreadable as e:
            # Said once at the close and alerted by reconcile; not a line every guard pass.
            logger.debug("%s; tried again later", e)
            continue
        if position_books_apply(position=position, books=books, actor=actor):
            completed.append(position)
    return completed


@transaction.atomic
def position_books_apply(*, position: Position, books: PositionBooks, actor: str) -> bool:
    """Write a completed position's numbers from its fills; False when another writer did."""
    updated = Position.objects.filter(pk=position.pk, awaiting_fills=True).update(
        awaiting_fills=False,
        realized_pnl=books.realized_pnl,
        fees=books.fees,
        exit_price=books.exit_price,
        closed_at=books.closed_at,
    )
    if not updated:
        return False
    position.refresh_from_db()
    TradeEvent.objects.create(
        symbol_id=position.symbol_id,
        position=position,
        kind=TradeEvent.Kind.CLOSED,
        message=f"fills read: {position.close_reason} @ {books.exit_price} PnL "
        f"{books.realized_pnl} (fees {books.fees})",
        actor=actor[:150],
    )
    logger.info(
        "[Close] %s %s fills read: @ %s | PnL %s USDT",
        position.symbol.name,
        position.close_reason,
        _plain(books.exit_price),
        _money(books.realized_pnl),
    )
    return True


def _plain(value: Decimal | None) -> str:
    return "?" if value is None else f"{value.normalize():f}"


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')) + 0}"
