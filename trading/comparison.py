"""One comparison of what the exchange holds with what the book says.

``exchange_snapshot`` reads the exchange with a fixed number of requests (the guard's lean
reads, or the full sweep the sentinel and reconcile use). The rest are pure functions over a
snapshot (or the guard's stored view) and the book's open records: no request, no query. The
guard repairs from them, reconcile reports and repairs, the sentinel alerts, the dashboard
shows, so "is this position protected" has one answer everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from django.utils import timezone

from exchange.gateway import ExchangeGateway, ExchangeOrder, ExchangePosition
from trading import guard_reads

SL = "SL"
TP = "TP"
EXIT_KINDS = (SL, TP)
EXIT_KIND_NAMES = {SL: "stop-loss", TP: "take-profit"}
# Binance's order types that work as each exit, conditional (algo) and regular alike.
EXIT_ORDER_TYPES = {SL: ("STOP_MARKET", "STOP"), TP: ("TAKE_PROFIT_MARKET", "TAKE_PROFIT")}
# How long something on its way is given before it counts as a divergence: an order placed
# moments ago that Binance's open-order lists do not show yet (new conditional orders can be
# hidden for about 30 s), an entry whose answer is in flight, a close being recorded.
SETTLE_GRACE = timedelta(seconds=60)


@dataclass
class ExchangeSnapshot:
    """The exchange's positions and open orders (regular and conditional), by symbol."""

    positions: dict[str, ExchangePosition]
    orders: dict[str, list[ExchangeOrder]]
    # When the position read was sent: a record younger than this may not be in the picture.
    taken_at: datetime = field(default_factory=timezone.now)


def exchange_snapshot(
    *, gateway: ExchangeGateway, watched: set[str] | None = None
) -> ExchangeSnapshot:
    """Read the positions of every symbol and the open orders the pass needs (see
    ``trading.guard_reads``): the conditional orders of ``watched``, or with ``watched`` None
    (the sweep) every open order, regular and conditional, of every symbol.

    The order reads go out together (a thread each), then the position read: a stop that fires
    in between leaves the symbol flat in the picture rather than showing a position without its
    stop. A position on a symbol outside ``watched`` (opened by hand) has its orders read after
    the position read, so that symbol's position is read once more after them and that second
    read is the one used for it: the same order, orders before the position, for every symbol.
    """
    reads = guard_reads.order_reads(watched=watched or set(), sweep=watched is None)
    found = guard_reads.orders_read(gateway, reads)
    taken_at = timezone.now()
    positions = {p.symbol: p for p in gateway.fetch_positions()}
    if watched is not None and guard_reads.per_symbol(watched=len(watched)):
        extra = sorted(set(positions) - watched)
        if extra:
            found += guard_reads.orders_read(
                gateway, guard_reads.order_reads(watched=set(extra), sweep=False)
            )
            again = {p.symbol: p for p in gateway.fetch_positions()}
            for symbol in extra:
                if symbol in again:
                    positions[symbol] = again[symbol]
                else:
                    del positions[symbol]  # gone meanwhile: flat, not unprotected
    orders: dict[str, list[ExchangeOrder]] = defaultdict(list)
    for order in found:
        orders[order.symbol].append(order)
    return ExchangeSnapshot(positions=positions, orders=dict(orders), taken_at=taken_at)


class HeldPosition(Protocol):
    symbol: str
    side: str
    quantity: Decimal


class OpenOrder(Protocol):
    side: str
    order_type: str


class Kind(StrEnum):
    """The ways the book and the exchange disagree, in the order they are reported."""

    EXIT_MISSING = "exit missing"
    UNRECORDED_POSITION = "unrecorded position"
    POSITION_MISSING = "position missing"
    STATUS_CONTRADICTED = "status contradicted"
    QUANTITY_MISMATCH = "quantity mismatch"
    PNL_DRIFT = "PnL drift"


@dataclass(frozen=True)
class Divergence:
    kind: Kind
    symbol: str
    held: Any | None = None  # the exchange's position, when it holds one
    record: Any | None = None  # our open record of the symbol, when there is one
    exit_kind: str = ""  # SL or TP for a missing exit
    ours: Decimal | None = None  # PnL drift: the unrealized PnL the book computes
    drift: Decimal | None = None  # PnL drift: how far it is from the exchange's


# Our order rows that may be on the exchange though its lists do not show them yet. UNKNOWN (the
# sender gave up) is not given the benefit of the doubt: the guard looks it up.
IN_FLIGHT_ORDER_STATUSES = ("INTENT", "SENT", "OPEN")


def exit_sent_recently(record: Any, kind: str, *, now: datetime) -> bool:
    """Whether the book holds an exit of ``kind`` on the closing side of ``record`` sent within
    the grace (its ``orders`` prefetched, or one query)."""
    side = closing_side(record.side)
    return any(
        order.purpose == kind
        and order.side == side
        and order.status in IN_FLIGHT_ORDER_STATUSES
        and order.created_at > now - SETTLE_GRACE
        for order in record.orders.all()
    )


def closing_side(position_side: str) -> str:
    """The order side that closes a position of ``position_side`` (LONG or SHORT)."""
    return "SELL" if position_side == "LONG" else "BUY"


def closes_position(order: Any) -> bool:
    """A reduce-only or close-position order: it can only shrink what is held."""
    return bool(getattr(order, "close_position", False) or getattr(order, "reduce_only", False))


def exit_on_exchange(*, held: HeldPosition, orders: Iterable[OpenOrder], kind: str) -> bool:
    """True when an open order closes the position the exchange holds (its side, whatever the
    book says) as a stop-loss or take-profit of ``kind``. Exits of the other side, left from
    before a flip, do not count."""
    side = closing_side(held.side)
    return any(
        order.side == side and order.order_type in EXIT_ORDER_TYPES[kind] and closes_position(order)
        for order in orders
    )


def divergences(
    *,
    held: Mapping[str, HeldPosition],
    orders: Mapping[str, list[OpenOrder]],
    records: Mapping[str, Any],
    now: datetime,
    exit_on_its_way: Callable[[Any, str], bool] = lambda record, kind: False,
    pnl_drift_limit: Decimal | None = None,
) -> list[Divergence]:
    """Every way the exchange (``held`` positions and open ``orders`` by symbol) and the book
    (``records``: the open record of each symbol, with ``status``, ``side``, ``quantity`` and
    ``opened_at``) disagree.

    The exchange is the truth: a position it holds needs both exits whatever the record says.
    ``exit_on_its_way(record, kind)`` says when the book knows an exit of that kind was just
    sent (it is given ``SETTLE_GRACE``); records younger than the grace are not called missing
    or contradicted (their entry or close may be in flight). With ``pnl_drift_limit``, an open
    record whose unrealized PnL at the exchange's mark differs from the exchange's by more than
    the limit is a drift (a wrong entry price or quantity in the book).
    """
    found: list[Divergence] = []
    settled = now - SETTLE_GRACE
    for name in sorted(set(held) | set(records)):
        live = held.get(name)
        record = records.get(name)
        if live is not None:
            for kind in EXIT_KINDS:
                if exit_on_exchange(held=live, orders=orders.get(name, ()), kind=kind):
                    continue
                # Only a record of the side held can have an exit for it on its way.
                if (
                    record is not None
                    and record.side == live.side
                    and exit_on_its_way(record, kind)
                ):
                    continue
                found.append(Divergence(Kind.EXIT_MISSING, name, live, record, kind))
        if record is None:
            if live is not None:
                found.append(Divergence(Kind.UNRECORDED_POSITION, name, live, None))
            continue
        young = record.opened_at > settled
        if live is None:
            if not young:
                found.append(Divergence(Kind.POSITION_MISSING, name, None, record))
            continue
        if record.status != "OPEN":
            if not young:
                found.append(Divergence(Kind.STATUS_CONTRADICTED, name, live, record))
            continue
        if live.side != record.side or live.quantity != record.quantity:
            found.append(Divergence(Kind.QUANTITY_MISMATCH, name, live, record))
            continue
        if pnl_drift_limit is not None and record.entry_price is not None:
            ours = unrealized_pnl(record, mark_price=live.mark_price)
            drift = abs(ours - live.unrealized_pnl)
            if drift > pnl_drift_limit:
                found.append(Divergence(Kind.PNL_DRIFT, name, live, record, ours=ours, drift=drift))
    return found


def unrealized_pnl(record: Any, *, mark_price: Decimal) -> Decimal:
    """The book's unrealized PnL of ``record`` (side, quantity, entry price) at ``mark_price``."""
    direction = Decimal(1) if record.side == "LONG" else Decimal(-1)
    return (mark_price - record.entry_price) * record.quantity * direction
