"""Reconcile: compare the database with the exchange, report each difference, repair the safe ones.

Safe repairs are those that only make the database tell the truth or remove what no position
needs: recording a close that happened on the exchange, cancelling our orders left without a
position, and marking intents the exchange never received. Anything that would open, resize or
close a position (an unknown position, a quantity mismatch) is reported for a person.

Rows touched in the last ``GRACE_SECONDS`` are left alone: the order path may be between storing
an intent and hearing back from the exchange, and what looks lost may be merely in flight.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from core.errors import ArenaError, IllegalTransition
from exchange.gateway import ExchangeGateway, ExchangeOrder, ExchangePosition
from trading.books_reconcile import books_differences
from trading.comparison import (
    EXIT_KIND_NAMES,
    SETTLE_GRACE,
    Divergence,
    Kind,
    divergences,
    exchange_snapshot,
    exit_sent_recently,
)
from trading.differences import (
    CLOSED_ON_EXCHANGE,
    EXIT_MISSING,
    LOST_INTENT,
    MISMATCH,
    ORPHAN_ORDER,
    STALE_ORDER,
    STATUS_CONTRADICTED,
    UNKNOWN_ORDER,
    UNKNOWN_POSITION,
    UNRECORDED_ENTRY,
    Difference,
)
from trading.gateway import exchange_gateway
from trading.locks import SymbolBusy, symbol_lock
from trading.models import Order, Position, TradeEvent
from trading.services import position_record_exchange_close
from trading.transitions import order_transition, orders_transition, position_transition

logger = logging.getLogger(__name__)

GRACE_SECONDS = int(SETTLE_GRACE.total_seconds())
ACTOR = "reconcile"


@dataclass
class ReconcileReport:
    repair: bool
    differences: list[Difference] = field(default_factory=list)
    error: str = ""  # the exchange could not be read: nothing was compared

    @property
    def unresolved(self) -> list[Difference]:
        return [d for d in self.differences if not d.repaired]

    @property
    def ok(self) -> bool:
        return not self.error and not self.unresolved


def reconcile(
    *, repair: bool, gateway: ExchangeGateway | None = None, now: datetime | None = None
) -> ReconcileReport:
    """Compare positions, orders and TP/SL of the database with the exchange.

    Reads the exchange with three requests (positions, open orders, open conditional orders),
    plus one lookup per database order the exchange does not list as open. With ``repair``,
    fixes what is safe (see the module docstring), each symbol under its lock.
    """
    report = ReconcileReport(repair=repair)
    gateway = gateway or exchange_gateway()
    now = now or timezone.now()
    try:
        snapshot = exchange_snapshot(gateway=gateway)  # every position and open order
        on_exchange = snapshot.positions
        exchange_orders = [order for orders in snapshot.orders.values() for order in orders]
    except ArenaError as e:
        report.error = f"exchange unreadable: {e}"
        logger.error("reconcile: %s", report.error)
        return report
    _Comparison(gateway, now, repair, on_exchange, exchange_orders, report).run()
    report.differences += books_differences(gateway=gateway, repair=repair, now=now)
    for difference in report.differences:
        (logger.info if difference.repaired else logger.warning)("reconcile: %s", difference)
    return report


@dataclass
class _Comparison:
    gateway: ExchangeGateway
    now: datetime
    repair: bool
    on_exchange: dict[str, ExchangePosition]
    exchange_orders: list[ExchangeOrder]
    report: ReconcileReport

    @property
    def settled_before(self) -> datetime:
        return self.now - timedelta(seconds=GRACE_SECONDS)

    def run(self) -> None:
        positions = list(
            Position.objects.filter(status__in=Position.OPEN_STATUSES)
            .select_related("symbol")
            .prefetch_related("orders")
            .order_by("symbol__name")
        )
        recorded = {p.symbol.name: p for p in positions}
        open_ids = {o.client_order_id for o in self.exchange_orders}
        orders: dict[str, list[ExchangeOrder]] = defaultdict(list)
        for order in self.exchange_orders:
            orders[order.symbol].append(order)
        found = divergences(
            held=self.on_exchange,
            orders=orders,
            records=recorded,
            now=self.now,
            exit_on_its_way=self._exit_on_its_way,
        )
        for divergence in found:
            self._divergence(divergence)
        self._orders_not_listed(open_ids)
        self._exchange_orders(recorded)

    def _exit_on_its_way(self, position: Position, kind: str) -> bool:
        """An entry younger than the grace is still the opening cycle's to protect; an exit sent
        within it may be hidden from the open-order lists (the sentinel's rule too)."""
        if position.status == Position.Status.OPENING:
            return position.opened_at > self.settled_before
        return exit_sent_recently(position, kind, now=self.now)

    # --- positions -------------------------------------------------------------------------
    def _divergence(self, divergence: Divergence) -> None:
        symbol, live, position = divergence.symbol, divergence.held, divergence.record
        if divergence.kind == Kind.EXIT_MISSING:
            whose = f"position {position.id}" if position is not None else "no record here"
            self._add(
                EXIT_MISSING,
                symbol,
                f"no {EXIT_KIND_NAMES[divergence.exit_kind]} closing the {live.side} on the "
                f"exchange ({whose}; the guard places it)",
            )
        elif divergence.kind == Kind.UNRECORDED_POSITION:
            self._add(
                UNKNOWN_POSITION,
                symbol,
                f"{live.side} {_plain(live.quantity)} @ {_plain(live.entry_price)} on the "
                "exchange, no record here (the guard's unknown-position rule applies)",
            )
        elif divergence.kind == Kind.POSITION_MISSING:
            if position.status == Position.Status.OPENING:
                self._lost_entry(position)
                return
            difference = self._add(
                CLOSED_ON_EXCHANGE,
                symbol,
                f"position {position.id} {position.side} {_plain(position.quantity)} is "
                f"{position.status} here, flat on the exchange",
                repairable=True,
            )
            if self.repair:
                self._under_lock(difference, position, self._record_close)
        elif divergence.kind == Kind.STATUS_CONTRADICTED:
            if position.status == Position.Status.OPENING:
                self._add(
                    UNRECORDED_ENTRY,
                    symbol,
                    f"position {position.id} is still OPENING but the exchange holds "
                    f"{live.side} {_plain(live.quantity)}",
                )
            else:
                self._add(
                    STATUS_CONTRADICTED,
                    symbol,
                    f"position {position.id} is {position.status} here but the exchange still "
                    f"holds {live.side} {_plain(live.quantity)} (the guard reopens, protects "
                    "and closes it)",
                )
        elif divergence.kind == Kind.QUANTITY_MISMATCH:
            self._add(
                MISMATCH,
                symbol,
                f"here {position.side} {_plain(position.quantity)}, exchange {live.side} "
                f"{_plain(live.quantity)}",
            )

    def _lost_entry(self, position: Position) -> None:
        entries = list(
            position.orders.filter(
                purpose=Order.Purpose.ENTRY, status__in=Order.ACTIVE_STATUSES
            ).order_by("id")
        )
        found = [
            self.gateway.fetch_order(
                symbol=position.symbol.name,
                client_order_id=o.client_order_id,
                conditional=o.is_conditional,
            )
            for o in entries
        ]
        if any(f is not None and f.filled_quantity > 0 for f in found):
            self._add(
                UNRECORDED_ENTRY,
                position.symbol.name,
                f"position {position.id} is OPENING, its entry filled on the exchange, and the "
                "exchange is flat now",
            )
            return
        difference = self._add(
            LOST_INTENT,
            position.symbol.name,
            f"position {position.id} is OPENING but its entry never reached the exchange",
            repairable=True,
        )
        if self.repair:
            self._under_lock(difference, position, self._mark_entry_lost)

    # --- orders ----------------------------------------------------------------------------
    def _orders_not_listed(self, open_ids: set[str]) -> None:
        """Our active orders the exchange does not list as open: learn what became of them."""
        stale = (
            Order.objects.filter(
                status__in=Order.ACTIVE_STATUSES, updated_at__lte=self.settled_before
            )
            .exclude(client_order_id__in=open_ids)
            .select_related("symbol", "position")
            .order_by("id")
        )
        for order in stale:
            if order.position is not None and order.position.status == Position.Status.OPENING:
                continue  # the lost-entry check above speaks for it
            try:
                found = self.gateway.fetch_order(
                    symbol=order.symbol.name,
                    client_order_id=order.client_order_id,
                    conditional=order.is_conditional,
                )
            except ArenaError as e:
                self._add(STALE_ORDER, order.symbol.name, f"{order}: lookup failed: {e}")
                continue
            if found is None:
                difference = self._add(
                    LOST_INTENT,
                    order.symbol.name,
                    f"order {order.client_order_id} ({order.purpose}) is {order.status} here, "
                    "unknown to the exchange",
                    repairable=True,
                )
                if self.repair:
                    self._set_order(
                        difference, order, Order.Status.EXPIRED, "never reached the exchange"
                    )
            elif found.our_status not in Order.ACTIVE_STATUSES:
                difference = self._add(
                    STALE_ORDER,
                    order.symbol.name,
                    f"order {order.client_order_id} ({order.purpose}) is {order.status} here, "
                    f"{found.status} on the exchange",
                    repairable=True,
                )
                if self.repair:
                    self._set_order(difference, order, found.our_status, "")

    def _exchange_orders(self, recorded: dict[str, Position]) -> None:
        ours = {
            o.client_order_id: o
            for o in Order.objects.filter(
                client_order_id__in=[e.client_order_id for e in self.exchange_orders]
            ).select_related("position")
        }
        for live in self.exchange_orders:
            row = ours.get(live.client_order_id)
            label = f"{live.order_type} {live.side} {live.client_order_id}"
            if row is None:
                self._add(
                    UNKNOWN_ORDER,
                    live.symbol,
                    f"{label} open on the exchange, not placed by this bot (left alone)",
                )
                continue
            position = recorded.get(live.symbol)
            needed = (
                position is not None
                and live.symbol in self.on_exchange
                and (row.position_id is None or row.position_id == position.id)
            )
            if needed or row.updated_at > self.settled_before:
                continue
            why = (
                "its position is closed"
                if position is None
                else "the exchange holds no position"
                if live.symbol not in self.on_exchange
                else f"it belongs to position {row.position_id}, not the open one"
            )
            difference = self._add(
                ORPHAN_ORDER, live.symbol, f"{label} open on the exchange, {why}", repairable=True
            )
            if self.repair:
                self._cancel(difference, live, row)

    # --- repairs ---------------------------------------------------------------------------
    def _under_lock(self, difference: Difference, position: Position, repair) -> None:
        try:
            with symbol_lock(position.symbol_id):
                position.refresh_from_db()
                if position.status not in Position.OPEN_STATUSES:
                    difference.repaired = True
                    difference.outcome = f"already {position.status} meanwhile"
                    return
                repair(difference, position)
        except SymbolBusy:
            difference.outcome = "symbol busy (the order path holds it); run again"
        except ArenaError as e:
            difference.outcome = f"failed: {e}"

    def _record_close(self, difference: Difference, position: Position) -> None:
        # The same service the guard records exchange closes with: reason SL or TP when one of
        # ours fired, else LIQUIDATION; exit price and PnL from the fills.
        outcome = position_record_exchange_close(
            position=position, gateway=self.gateway, actor=ACTOR
        )
        position.refresh_from_db()
        difference.repaired = position.status == Position.Status.CLOSED
        if not difference.repaired:
            difference.outcome = f"not recorded: {outcome}"
            return
        pnl = _plain(position.realized_pnl) if position.realized_pnl is not None else "?"
        price = _plain(position.exit_price) if position.exit_price is not None else "?"
        difference.outcome = f"recorded closed: {position.close_reason} @ {price}, PnL {pnl}"

    @transaction.atomic
    def _mark_entry_lost(self, difference: Difference, position: Position) -> None:
        orders_transition(
            Order.objects.filter(
                position=position, purpose=Order.Purpose.ENTRY, status__in=Order.ACTIVE_STATUSES
            ),
            Order.Status.EXPIRED,
            reason="never reached the exchange",
            actor=ACTOR,
            fields={"error_message": "never reached the exchange (reconcile)"},
        )
        updated = position.status == Position.Status.OPENING and position_transition(
            position,
            Position.Status.FAILED,
            reason="entry never reached the exchange",
            actor=ACTOR,
            fields={"closed_at": timezone.now()},
        )
        if updated:
            _event(
                position=position,
                kind=TradeEvent.Kind.FAILED,
                message="entry never reached the exchange (found by reconcile)",
            )
        difference.repaired = bool(updated)
        difference.outcome = "position marked FAILED, entry EXPIRED"

    def _set_order(self, difference: Difference, order: Order, status: str, note: str) -> None:
        # Conditional on the status we read: a concurrent update by the order path wins.
        try:
            updated = order_transition(
                order,
                status,
                reason=note or "stale: the exchange says otherwise",
                actor=ACTOR,
                fields={"error_message": f"{note} (reconcile)"} if note else None,
            )
        except IllegalTransition as e:
            difference.outcome = f"not repaired: {e}"
            return
        difference.repaired = bool(updated)
        difference.outcome = f"marked {status}" if updated else "changed meanwhile; left as is"

    def _cancel(self, difference: Difference, live: ExchangeOrder, row: Order) -> None:
        try:
            gone = self.gateway.cancel_order(
                symbol=live.symbol,
                client_order_id=live.client_order_id,
                conditional=live.is_conditional,
            )
        except ArenaError as e:
            difference.outcome = f"cancel failed: {e}"
            return
        if row.status in Order.ACTIVE_STATUSES:
            order_transition(
                row, Order.Status.CANCELED, reason="orphan order", actor=ACTOR, follow=True
            )
        difference.repaired = True
        difference.outcome = "cancelled" if gone else "already gone on the exchange"

    def _add(self, kind: str, symbol: str, detail: str, *, repairable: bool = False) -> Difference:
        difference = Difference(kind=kind, symbol=symbol, detail=detail, repairable=repairable)
        self.report.differences.append(difference)
        return difference


def _event(*, position: Position, kind: str, message: str) -> None:
    TradeEvent.objects.create(
        symbol_id=position.symbol_id, position=position, kind=kind, message=message, actor=ACTOR
    )


def _plain(value) -> str:
    return f"{value.normalize():f}"


def reconcile_on_worker_ready(**kwargs: object) -> None:
    """Celery ``worker_ready`` handler: reconcile with repair once, in the background.

    A thread, so a slow or unreachable exchange never delays the worker (and its guard passes);
    every failure is logged, none stops the worker. Connect it in ``arena/celery.py`` with
    ``worker_ready.connect(reconcile_on_worker_ready)``.
    """
    threading.Thread(target=_reconcile_logged, name="reconcile-on-start", daemon=True).start()


def _reconcile_logged() -> None:
    try:
        report = reconcile(repair=True)
    except Exception:
        logger.exception("reconcile on worker start failed; the worker runs anyway")
        return
    finally:
        # This thread's own connection; the worker's pool processes have theirs.
        connection.close()
    if report.error:
        logger.error("reconcile on worker start: %s", report.error)
    elif report.differences:
        logger.warning(
            "reconcile on worker start: %d difference(s), %d left for a person",
            len(report.differences),
            len(report.unresolved),
        )
    else:
        logger.info("reconcile on worker start: database and exchange agree")
