"""Emergency close: halt trading, cancel every order, close every position, verify it is flat.

The order matters. Trading is halted first so no cycle opens a new position while we close;
orders are cancelled before the closes so a take-profit or stop-loss cannot fire into a position
we are already closing; and the result is read back from the exchange, because a close that was
sent is not a close that happened.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from trading.errors import ArenaError
from trading.exchange import ExchangeGateway, ExchangeOrder, ExchangePosition, exchange_gateway
from trading.models import Order, Position, Symbol, TradingSwitch
from trading.services import (
    CloseOutcome,
    exchange_position_flatten,
    position_close,
    position_record_exchange_close,
)
from trading.switch import trading_switch_set

logger = logging.getLogger(__name__)


class UnknownSymbols(ValueError):
    """Symbols were named that the bot does not know; nothing was done."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"Unknown symbol(s): {', '.join(names)}. Nothing was done.")
        self.names = names


CLOSED = "closed"
NOTHING_OPEN = "nothing open"
LEFT_OPEN = "LEFT OPEN"


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
        return [r for r in self.results if r.outcome == LEFT_OPEN]

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
    *, symbols: list[str] | None = None, reason: str, actor: str
) -> EmergencyReport:
    """Halt trading, cancel every order and close every position of ``symbols`` (all when None),
    then verify on the exchange that nothing is left.

    Closes are reduce-only market orders through ``position_close`` with ``forced_event=True``,
    so the minimum holding period does not apply. Never raises for a symbol that could not be
    closed: it is reported as LEFT OPEN with the reason, and the other symbols still go ahead.
    Raises ``UnknownSymbols`` before anything is done when a name is not known here.
    """
    names = emergency_symbols_validate(symbols=symbols)
    was_enabled = TradingSwitch.objects.filter(id=1, enabled=False).first() is None
    trading_switch_set(enabled=False, reason=f"emergency close: {reason}", actor=actor)
    logger.warning("emergency close by %s (%s): %s", actor, names or "all symbols", reason)

    gateway = exchange_gateway()
    problems: dict[str, list[str]] = defaultdict(list)
    exchange_positions: list[ExchangePosition] | None = None
    orders: list[ExchangeOrder] | None = None
    try:
        exchange_positions, orders = _read_exchange(gateway, symbols=names)
    except ArenaError as e:
        # Unreadable is not a reason to stop: cancel and close what the database knows.
        logger.error("emergency close: exchange unreadable before closing: %s", e)
    positions = _open_positions(names)
    scope = set(names or ())
    if names is None:
        scope |= {p.symbol.name for p in positions}
        scope |= {p.symbol for p in exchange_positions or ()}
        scope |= {o.symbol for o in orders or ()}
    had_position = {p.symbol.name for p in positions} | {
        p.symbol for p in exchange_positions or () if p.symbol in scope
    }

    # 1. Orders first, so no exit fires into a position while we close it.
    cancelled = 0
    for symbol in sorted(scope):
        open_here = [o for o in orders if o.symbol == symbol] if orders is not None else None
        if open_here == []:
            continue
        try:
            gateway.cancel_all_orders(symbol=symbol)
        except ArenaError as e:
            problems[symbol].append(f"cancelling orders failed: {e}")
            continue
        cancelled += len(open_here or ())
        _orders_mark_cancelled(symbol=symbol, seen=open_here)

    # 2. Close what the database knows, through the service the workers use.
    for position in positions:
        symbol = position.symbol.name
        if position.status != Position.Status.OPEN:
            # OPENING or CLOSING: the order path is mid-way or lost an answer; position_close
            # refuses those, so whatever the exchange holds is closed directly below.
            continue
        outcome = position_close(
            position=position,
            reason=Position.CloseReason.EMERGENCY,
            forced_event=True,
            gateway=gateway,
            actor=actor,
        )
        if outcome.status != CloseOutcome.CLOSED:
            problems[symbol].append(f"close {outcome}")

    # 3. Whatever the exchange still holds in scope without an OPEN record here is closed
    #    reduce-only all the same: a reduce-only order can never open or flip a position.
    handled = {p.symbol.name for p in positions if p.status == Position.Status.OPEN}
    for live in exchange_positions or ():
        if live.symbol in scope and live.symbol not in handled:
            problem = _close_directly(gateway=gateway, live=live)
            if problem:
                problems[live.symbol].append(problem)

    # 4. Verify. An exit the guard re-attached meanwhile is swept once more.
    results = _verify(gateway=gateway, scope=scope, had_position=had_position, problems=problems)

    # 5. Records still open here whose symbol is flat now are recorded closed.
    flat = {r.symbol for r in results if r.outcome != LEFT_OPEN}
    for position in _open_positions(sorted(flat)):
        outcome = position_record_exchange_close(
            position=position, gateway=gateway, reason=Position.CloseReason.EMERGENCY, actor=actor
        )
        if outcome.status != CloseOutcome.CLOSED:
            logger.warning("emergency close: could not record %s closed: %s", position, outcome)

    report = EmergencyReport(halted=was_enabled, orders_cancelled=cancelled, results=tuple(results))
    for result in report.results:
        log = logger.error if result.outcome == LEFT_OPEN else logger.warning
        log("emergency close: %s", result)
    return report


def _verify(
    *,
    gateway: ExchangeGateway,
    scope: set[str],
    had_position: set[str],
    problems: dict[str, list[str]],
) -> list[SymbolResult]:
    try:
        exchange_positions = gateway.fetch_positions()
        # Per symbol: an all-symbols order query weighs 40 and ccxt throttles it for seconds;
        # one symbol weighs 1, and an emergency has few symbols.
        orders = _read_orders(gateway, symbols=scope)
        leftover = {o.symbol for o in orders}
        for symbol in sorted(leftover):
            gateway.cancel_all_orders(symbol=symbol)
        if leftover:
            orders = _read_orders(gateway, symbols=leftover)
    except ArenaError as e:
        detail = f"could not verify on the exchange: {e}"
        return [SymbolResult(s, LEFT_OPEN, detail) for s in sorted(scope)]
    open_positions = {p.symbol: p for p in exchange_positions}
    open_orders: dict[str, int] = defaultdict(int)
    for order in orders:
        open_orders[order.symbol] += 1
    results = []
    for symbol in sorted(scope):
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
    rows.update(status=Order.Status.CANCELED, updated_at=timezone.now())


def _close_directly(*, gateway: ExchangeGateway, live: ExchangePosition) -> str:
    """Close a position no OPEN record here covers; return what went wrong, or ""."""
    symbol = Symbol.objects.filter(name=live.symbol).first()
    if symbol is None:
        return f"{live.symbol} is not a symbol of this bot: close it by hand"
    try:
        answer = exchange_position_flatten(symbol=symbol, gateway=gateway, actor="emergency")
    except ArenaError as e:
        return f"close failed: {e}"
    if answer is not None:
        logger.warning(
            "emergency close: closed %s %s %s directly (%s)",
            live.symbol,
            live.side,
            live.quantity,
            answer.client_order_id,
        )
    return ""
