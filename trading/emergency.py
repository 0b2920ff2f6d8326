"""Emergency close: halt trading, close every position, cancel every order, verify it is flat.

The order matters. Trading is halted first, under the row lock every entry is admitted under,
so no entry is sent after it; the symbols' leases are taken over rather than waited for. Each
position is closed before its orders are cancelled, so a close that fails leaves the position
with its stop-loss and take-profit, never naked; and the result is read back from the
exchange, because a close that was sent is not a close that happened.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from core.errors import ArenaError
from exchange.gateway import ExchangeGateway, ExchangeOrder, ExchangePosition
from trading.gateway import exchange_gateway
from trading.locks import symbol_leases_take_over
from trading.models import Order, Position, Symbol, TradingSwitch
from trading.services import (
    CloseOutcome,
    exchange_position_flatten,
    position_close,
    position_record_exchange_close,
)
from trading.switch import trading_switch_set
from trading.transitions import orders_transition

logger = logging.getLogger(__name__)


class UnknownSymbols(ValueError):
    """Symbols were named that the bot does not know; nothing was done."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"Unknown symbol(s): {', '.join(names)}. Nothing was done.")
        self.names = names


CLOSED = "closed"
NOTHING_OPEN = "nothing open"
LEFT_OPEN = "LEFT OPEN"
UNVERIFIED = "COULD NOT VERIFY"
# Close-and-check rounds: a late fill or an exit re-attached meanwhile is handled next round.
ROUNDS = 3
# Longer than any emergency takes; released at the end, so only a crash leaves it to expire.
EMERGENCY_LEASE_SECONDS = 600.0


@dataclass(frozen=True)
class EmergencyPlan:
    """What an emergency close would touch, read before anything is done."""

    symbols: tuple[str, ...]
    trading_enabled: bool
    positions: tuple[Position, ...]  # open in the database
    exchange_positions: tuple[ExchangePosition, ...]
    orders: tuple[ExchangeOrder, ...]  # regular and conditional, open on the exchange
    exchange_error: str = ""  # empty when the exchange answered

    @property
    def is_empty(self) -> bool:
        return not (self.positions or self.exchange_positions or self.orders)

    @property
    def position_rows(self) -> list[tuple[str, str, str, str]]:
        """One (symbol, side, quantity, where) row per symbol, the database's and the
        exchange's view side by side."""
        live = {p.symbol: p for p in self.exchange_positions}
        rows = []
        for position in self.positions:
            seen = live.pop(position.symbol.name, None)
            where = f"recorded here ({position.status}); " + (
                f"exchange: {seen.side} {_plain(seen.quantity)}"
                if seen
                else "not seen on the exchange"
            )
            rows.append((position.symbol.name, position.side, _plain(position.quantity), where))
        for symbol, seen in sorted(live.items()):
            where = "on the exchange, no record here"
            rows.append((symbol, seen.side, _plain(seen.quantity), where))
        return rows


@dataclass(frozen=True)
class SymbolResult:
    symbol: str
    outcome: str  # CLOSED, NOTHING_OPEN or LEFT_OPEN
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.symbol}: {self.outcome}{f' ({self.detail})' if self.detail else ''}"


@dataclass(frozen=True)
class EmergencyReport:
    halted: bool  # False when trading was already halted
    orders_cancelled: int
    results: tuple[SymbolResult, ...] = field(default_factory=tuple)

    @property
    def left_open(self) -> list[SymbolResult]:
        """Symbols not known to be flat: left open, or not verifiable on the exchange."""
        return [r for r in self.results if r.outcome in (LEFT_OPEN, UNVERIFIED)]

    @property
    def unverified(self) -> list[SymbolResult]:
        return [r for r in self.results if r.outcome == UNVERIFIED]

    @property
    def ok(self) -> bool:
        return not self.left_open


def emergency_symbols_validate(*, symbols: list[str] | None) -> list[str] | None:
    """Return the names upper-cased, or raise ``UnknownSymbols`` naming those not known here."""
    if symbols is None:
        return None
    names = sorted({s.strip().upper() for s in symbols if s.strip()})
    known = set(Symbol.objects.filter(name__in=names).values_list("name", flat=True))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UnknownSymbols(unknown or ["(none given)"])
    return names


def emergency_plan(
    *, symbols: list[str] | None = None, gateway: ExchangeGateway | None = None
) -> EmergencyPlan:
    """Read what an emergency close would touch (positions and open orders); changes nothing."""
    names = emergency_symbols_validate(symbols=symbols)
    switch = TradingSwitch.objects.filter(id=1).first()
    positions = _open_positions(names)
    exchange_positions: list[ExchangePosition] = []
    orders: list[ExchangeOrder] = []
    error = ""
    try:
        exchange_positions, orders = _read_exchange(gateway or exchange_gateway(), symbols=names)
    except ArenaError as e:
        error = str(e) or type(e).__name__
    exchange_positions = [p for p in exchange_positions if names is None or p.symbol in names]
    orders = [o for o in orders if names is None or o.symbol in names]
    scope = names or sorted(
        {p.symbol.name for p in positions}
        | {p.symbol for p in exchange_positions}
        | {o.symbol for o in orders}
    )
    return EmergencyPlan(
        symbols=tuple(scope),
        trading_enabled=switch.enabled if switch else True,
        positions=tuple(positions),
        exchange_positions=tuple(exchange_positions),
        orders=tuple(orders),
        exchange_error=error,
    )


def emergency_close_all(
    *,
    symbols: list[str] | None = None,
    reason: str,
    actor: str,
    gateway: ExchangeGateway | None = None,
) -> EmergencyReport:
    """Halt trading, close every position and cancel every order of ``symbols`` (all when None),
    then verify on the exchange that nothing is left.

    The scope is read from the exchange (every symbol with a position or an order there, opened
    by hand too) and the database. Leases are taken over, not waited for: a cycle holding one
    sends nothing more. Entries admitted before the halt are waited for, so one landing late is
    closed too. Per symbol the position is closed first (``position_close`` with
    ``forced_event=True``, or a reduce-only order for one no OPEN record covers) and its orders
    are cancelled only once the exchange shows it flat: a close that fails leaves its exits in
    place. Rounds repeat while the exchange still shows something. Never raises for a symbol:
    it is reported LEFT OPEN, or COULD NOT VERIFY when the exchange could not be read.
    Raises ``UnknownSymbols`` before anything is done when a name is not known here.
    """
    names = emergency_symbols_validate(symbols=symbols)
    was_enabled = TradingSwitch.objects.filter(id=1, enabled=False).first() is None
    # The halt takes the kill switch's row lock, as every entry's admission does: once it
    # returns, no entry can be admitted, and those admitted before have committed SENT rows.
    trading_switch_set(enabled=False, reason=f"emergency close: {reason}", actor=actor)
    logger.warning("emergency close by %s (%s): %s", actor, names or "all symbols", reason)
    gateway = gateway or exchange_gateway()
    symbol_ids = list(
        Symbol.objects.filter(**({"name__in": names} if names else {})).values_list("id", flat=True)
    )
    problems: dict[str, list[str]] = defaultdict(list)
    touched: set[str] = set()  # symbols that had something to close or cancel
    had_position: set[str] = set()
    cancelled = 0
    started = timezone.now()
    with symbol_leases_take_over(symbol_ids, ttl=EMERGENCY_LEASE_SECONDS):
        _entries_in_flight_wait(names=names)
        for _ in range(ROUNDS):
            try:
                live_positions, live_orders = _read_exchange(gateway, symbols=names)
            except ArenaError as e:
                # Unreadable is not a reason to stop: close what the database knows.
                logger.error("emergency close: exchange unreadable: %s", e)
                live_positions, live_orders = None, None
            positions = _open_positions(names)
            todo = {p.symbol.name for p in positions}
            todo |= {p.symbol for p in live_positions or () if names is None or p.symbol in names}
            todo |= {o.symbol for o in live_orders or () if names is None or o.symbol in names}
            had_position |= {p.symbol.name for p in positions}
            had_position |= {p.symbol for p in live_positions or () if p.symbol in todo}
            if not todo:
                break
            touched |= todo
            for symbol in sorted(todo):
                count = _symbol_flatten(
                    symbol=symbol, gateway=gateway, actor=actor, problems=problems
                )
                cancelled += count
                if count:
                    problems[symbol].append(f"{count} order(s) cancelled")
        results = _verify(
            gateway=gateway,
            names=names,
            scope=touched,
            had_position=had_position,
            problems=problems,
        )
        # Records still open here whose symbol is flat now are recorded closed.
        flat = {r.symbol for r in results if r.outcome in (CLOSED, NOTHING_OPEN)}
        for position in _open_positions(sorted(flat)):
            outcome = position_record_exchange_close(
                position=position,
                gateway=gateway,
                reason=Position.CloseReason.EMERGENCY,
                actor=actor,
            )
            if outcome.status != CloseOutcome.CLOSED:
                logger.warning("emergency close: could not record %s closed: %s", position, outcome)
    cancelled += _cancelled_by_closes(since=started)
    report = EmergencyReport(halted=was_enabled, orders_cancelled=cancelled, results=tuple(results))
    for result in report.results:
        log = logger.warning if result.outcome in (CLOSED, NOTHING_OPEN) else logger.error
        log("emergency close: %s", result)
    return report


def _entries_in_flight_wait(*, names: list[str] | None) -> None:
    """Wait (bounded) for entries admitted before the halt to get their answer, so a fill that
    lands a moment later is seen by the exchange read that follows."""
    budget = float(settings.EXCHANGE_RETRY_MAX_SECONDS) + 2 * float(
        settings.EXCHANGE_TIMEOUT_SECONDS
    )
    in_flight = Order.objects.filter(
        purpose=Order.Purpose.ENTRY,
        status=Order.Status.SENT,
        sent_at__gte=timezone.now() - timedelta(seconds=budget),
    )
    if names is not None:
        in_flight = in_flight.filter(symbol__name__in=names)
    deadline = time.monotonic() + budget
    while in_flight.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _symbol_flatten(
    *, symbol: str, gateway: ExchangeGateway, actor: str, problems: dict[str, list[str]]
) -> int:
    """Close the symbol's position, then (only once it is flat) cancel its orders one by one.
    Returns how many orders the exchange confirmed cancelled here."""
    row = Symbol.objects.filter(name=symbol).first()
    if row is None:
        problems[symbol].append("not a symbol of this bot: close it by hand")
        return 0
    position = (
        Position.objects.filter(symbol=row, status__in=Position.OPEN_STATUSES)
        .order_by("id")
        .first()
    )
    try:
        if position is not None and position.status == Position.Status.OPEN:
            outcome = position_close(
                position=position,
                reason=Position.CloseReason.EMERGENCY,
                forced_event=True,
                gateway=gateway,
                actor=actor,
            )
            if outcome.status != CloseOutcome.CLOSED:
                problems[symbol].append(f"close {outcome}; its orders left in place")
                return 0
        elif gateway.fetch_position(symbol=symbol) is not None:
            exchange_position_flatten(symbol=row, gateway=gateway, actor="emergency")
        if gateway.fetch_position(symbol=symbol) is not None:
            problems[symbol].append("still open after its close; its orders left in place")
            return 0
        orders = gateway.fetch_open_orders(symbol=symbol)
        orders += gateway.fetch_open_conditional_orders(symbol=symbol)
        cancelled = 0
        for order in orders:
            if gateway.cancel_order(
                symbol=symbol,
                client_order_id=order.client_order_id,
                conditional=order.is_conditional,
            ):
                cancelled += 1
    except ArenaError as e:
        problems[symbol].append(f"failed: {e}")
        return 0
    _orders_mark_cancelled(symbol=symbol, seen=orders)
    return cancelled


def _cancelled_by_closes(*, since) -> int:
    """Exits that ``position_close`` cancelled (the exchange confirmed each) during this run."""
    return Order.objects.filter(
        purpose__in=(Order.Purpose.STOP_LOSS, Order.Purpose.TAKE_PROFIT),
        status=Order.Status.CANCELED,
        updated_at__gte=since,
        position__close_reason=Position.CloseReason.EMERGENCY,
        position__closed_at__gte=since,
    ).count()


def _verify(
    *,
    gateway: ExchangeGateway,
    names: list[str] | None,
    scope: set[str],
    had_position: set[str],
    problems: dict[str, list[str]],
) -> list[SymbolResult]:
    """Read the exchange once more (every symbol when ``names`` is None) and judge by it."""
    try:
        exchange_positions, orders = _read_exchange(gateway, symbols=names)
    except ArenaError as e:
        detail = f"could not verify on the exchange: {e}"
        return [SymbolResult(s, UNVERIFIED, detail) for s in sorted(scope or {"(all symbols)"})]
    open_positions = {p.symbol: p for p in exchange_positions}
    open_orders: dict[str, int] = defaultdict(int)
    for order in orders:
        open_orders[order.symbol] += 1
    results = []
    for symbol in sorted(scope | set(open_positions) | set(open_orders)):
        if names is not None and symbol not in names:
            continue
        live = open_positions.get(symbol)
        if live is not None or open_orders[symbol]:
            what = []
            if live is not None:
                what.append(f"{live.side} {live.quantity.normalize():f} still open")
            if open_orders[symbol]:
                what.append(f"{open_orders[symbol]} order(s) still open")
            results.append(SymbolResult(symbol, LEFT_OPEN, "; ".join(what + problems[symbol])))
        elif symbol in had_position:
            results.append(SymbolResult(symbol, CLOSED, "; ".join(problems[symbol])))
        else:
            results.append(SymbolResult(symbol, NOTHING_OPEN, "; ".join(problems[symbol])))
    return results


def _read_exchange(
    gateway: ExchangeGateway, *, symbols: list[str] | None = None
) -> tuple[list[ExchangePosition], list[ExchangeOrder]]:
    orders = _read_orders(gateway, symbols=None if symbols is None else set(symbols))
    return gateway.fetch_positions(), orders


def _read_orders(
    gateway: ExchangeGateway, *, symbols: set[str] | None = None
) -> list[ExchangeOrder]:
    if symbols is None:
        return gateway.fetch_open_orders() + gateway.fetch_open_conditional_orders()
    orders: list[ExchangeOrder] = []
    for symbol in sorted(symbols):
        orders += gateway.fetch_open_orders(symbol=symbol)
        orders += gateway.fetch_open_conditional_orders(symbol=symbol)
    return orders


def _open_positions(names: list[str] | None) -> list[Position]:
    positions = Position.objects.filter(status__in=Position.OPEN_STATUSES).select_related("symbol")
    if names is not None:
        positions = positions.filter(symbol__name__in=names)
    return list(positions.order_by("symbol__name"))


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _orders_mark_cancelled(*, symbol: str, seen: list[ExchangeOrder] | None) -> None:
    """Our rows of the orders just cancelled say so (all active ones when none were listed)."""
    rows = Order.objects.filter(symbol__name=symbol, status__in=Order.ACTIVE_STATUSES).exclude(
        status=Order.Status.INTENT
    )
    if seen is not None:
        rows = rows.filter(client_order_id__in=[o.client_order_id for o in seen])
    orders_transition(rows, Order.Status.CANCELED, reason="emergency close", actor="emergency")
