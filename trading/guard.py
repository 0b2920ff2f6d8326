"""The guard: every 5 s, every open position keeps its stop-loss and take-profit on the exchange.

A pass reads the exchange with a fixed number of requests, whatever the number of positions
(positions, open orders, open algo orders, and the balance when a position is open), and the
database with a fixed number of queries; then it acts only where something is wrong:

- a missing stop-loss or take-profit is re-attached, at most once per debounce window per
  symbol, and never again after a rejection retrying cannot fix, until the rules change or an
  operator clears it in the admin;
- our own order placed moments ago may be missing from open-order queries (Binance has hidden
  new conditional orders for ~30 s): it is looked up by client id before anything is re-placed;
- a position gone from the exchange is recorded closed with the exchange's exit price and PnL,
  and its leftover orders are cancelled;
- a position on the exchange with no record here is reported, adopted or closed (a rule);
  our orders with no position are cancelled;
- the post-trade risk check runs for each open position.

It logs a gap once when found and once when fixed or given up, never a line per pass. Passes
never overlap: a pass holds a lease, and a pass that finds it held skips and is counted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Prefetch, Q
from django.utils import timezone

from monitoring.exchange_view import exchange_view_store
from monitoring.models import MonitoringSettings, ProtectionState
from monitoring.selectors import monitoring_settings
from monitoring.services import (
    alert_raise,
    heartbeat_record,
    lease_claim,
    lease_pause,
    lease_paused_until,
    lease_release,
)
from risk.models import RiskProfile
from risk.services import post_trade_check
from risk.sizing import position_excess
from trading import services as order_path
from trading.errors import ArenaError, OrderRejected, RateLimited, TemporaryError
from trading.exchange import ExchangeGateway, ExchangeOrder, ExchangePosition, exchange_gateway
from trading.locks import SymbolBusy, symbol_lock
from trading.models import Order, Position, Symbol, SymbolLock, TradeEvent
from trading.rounding import ExitTooClose, exit_prices, round_price_down, round_price_up

logger = logging.getLogger(__name__)

LEASE_NAME = "guard"
# The guard holds a symbol only for one re-attach: a few requests, retries included.
LOCK_SECONDS = 60.0
SL = ProtectionState.Kind.STOP_LOSS
TP = ProtectionState.Kind.TAKE_PROFIT
UNKNOWN = ProtectionState.Kind.UNKNOWN_POSITION
KIND_NAMES = {SL: "stop-loss", TP: "take-profit"}
STOP_TYPES = {SL: ("STOP_MARKET", "STOP"), TP: ("TAKE_PROFIT_MARKET", "TAKE_PROFIT")}
# Binance: "Order would immediately trigger" - the price is already through the stop.
WOULD_TRIGGER = -2021
# Exchange statuses of an order that is still working, and of one whose stop has fired.
WORKING = ("NEW", "PARTIALLY_FILLED")
FIRED = ("TRIGGERED", "FINISHED", "FILLED")


class GuardPaused(ArenaError):
    """The exchange rate-limited or banned us: the pass sends nothing until the pause ends."""


@dataclass
class GuardReport:
    """What one pass saw and did."""

    skipped: bool = False
    positions: int = 0
    requests: int = 0
    weight: int = 0
    duration_ms: int = 0
    reattached: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def actions(self) -> int:
        return len(self.reattached) + len(self.closed) + len(self.adopted) + len(self.cancelled)

    def summary(self) -> str:
        if self.skipped:
            return "guard: skipped (previous pass still running)"
        parts = [
            f"guard: {self.positions} position(s)",
            f"{self.requests} request(s)",
            f"weight {self.weight}",
            f"{self.duration_ms} ms",
        ]
        for label, items in (
            ("re-attached", self.reattached),
            ("gave up", self.gave_up),
            ("closed", self.closed),
            ("adopted", self.adopted),
            ("unknown", self.unknown),
            ("cancelled", self.cancelled),
        ):
            if items:
                parts.append(f"{label}: {', '.join(items)}")
        if self.error:
            parts.append(f"error: {self.error}")
        return " | ".join(parts)


@dataclass
class ExchangeSnapshot:
    """The exchange's positions and open orders (regular and conditional), by symbol."""

    positions: dict[str, ExchangePosition]
    orders: dict[str, list[ExchangeOrder]]


@dataclass
class GuardBook:
    """The database side of a pass: open positions with their exit orders, the guard's memory,
    the active risk profile and the symbols the order path holds right now."""

    positions: list[Position]
    states: dict[tuple[int, str], ProtectionState]
    active_profile: RiskProfile | None
    busy_symbol_ids: set[int]


@dataclass
class _Pass:
    gateway: ExchangeGateway
    rules: MonitoringSettings
    snapshot: ExchangeSnapshot
    book: GuardBook
    report: GuardReport
    now: datetime

    @property
    def debounce(self) -> timedelta:
        return timedelta(seconds=self.rules.reattach_debounce_seconds)


# --- the pass -------------------------------------------------------------------------------------
def guard_pass(*, gateway: ExchangeGateway | None = None) -> GuardReport:
    """Run one guard pass (skipped when the previous one still holds the lease)."""
    rules = monitoring_settings()
    owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not lease_claim(name=LEASE_NAME, owner=owner, seconds=rules.guard_lease_seconds):
        return GuardReport(skipped=True)
    report = GuardReport()
    started_at, started = timezone.now(), time.monotonic()
    requests_before = 0
    failure: BaseException | None = None
    try:
        paused_until = lease_paused_until(name=LEASE_NAME)
        if paused_until is not None:
            # Rate-limited or banned: a request now would only lengthen the ban.
            raise GuardPaused(f"rate limited by the exchange until {paused_until:%H:%M:%S} UTC")
        gateway = gateway or exchange_gateway()
        requests_before = gateway.request_count
        _guard_run(gateway=gateway, rules=rules, report=report)
    except RateLimited as exc:
        failure = exc
        report.error = f"{type(exc).__name__}: {exc}"
        lease_pause(
            name=LEASE_NAME, until=timezone.now() + timedelta(seconds=max(exc.retry_after, 1))
        )
    except Exception as exc:
        # Whatever failed, the lease is released and the heartbeat says so: one bad pass (the
        # exchange down, a bug on one row) must not stop the next ones.
        failure = exc
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        if gateway is not None:
            report.requests = gateway.request_count - requests_before
            report.weight = gateway.weight_used
        report.duration_ms = int((time.monotonic() - started) * 1000)
        heartbeat_record(
            process="guard",
            started_at=started_at,
            finished_at=timezone.now(),
            requests=report.requests,
            weight=report.weight,
            positions=report.positions,
            actions=report.actions,
            error=report.error,
            keep_minutes=rules.heartbeat_keep_minutes,
        )
        transition = lease_release(name=LEASE_NAME, owner=owner, error=report.error)
    if transition == "new":
        # Once per new error, not every 5 s; a traceback only where it is not the exchange's.
        traceback = None if isinstance(failure, ArenaError) or failure is None else failure
        logger.error("[Guard] pass failed: %s", report.error, exc_info=traceback)
        alert_raise(
            key="guard.failing",
            severity="critical",
            message=f"The guard cannot complete its passes: {report.error}",
            repeat_seconds=rules.alert_repeat_seconds,
        )
    elif transition == "cleared":
        logger.info("[Guard] passes complete again")
    return report


def _guard_run(*, gateway: ExchangeGateway, rules: MonitoringSettings, report: GuardReport) -> None:
    snapshot = exchange_snapshot(gateway=gateway)
    book = guard_book_load()
    ctx = _Pass(gateway, rules, snapshot, book, report, timezone.now())
    report.positions = len(snapshot.positions)
    recorded = {p.symbol.name for p in book.positions}
    for position in book.positions:
        if position.symbol_id in book.busy_symbol_ids:
            continue  # the order path is working on it right now; look again next pass
        exchange_position = snapshot.positions.get(position.symbol.name)
        if exchange_position is None:
            _position_gone(ctx, position)
        else:
            _position_protect(ctx, position, exchange_position)
    _unknown_positions(ctx, recorded)
    _orphan_orders_cancel(ctx, recorded)
    _post_trade_checks(ctx)
    exchange_view_store(
        positions=snapshot.positions.values(), orders=snapshot.orders, taken_at=ctx.now
    )


def exchange_snapshot(*, gateway: ExchangeGateway) -> ExchangeSnapshot:
    """Read every position and open order, all symbols at once (3 requests)."""
    positions = {p.symbol: p for p in gateway.fetch_positions()}
    orders: dict[str, list[ExchangeOrder]] = defaultdict(list)
    for order in [*gateway.fetch_open_orders(), *gateway.fetch_open_conditional_orders()]:
        orders[order.symbol].append(order)
    return ExchangeSnapshot(positions=positions, orders=dict(orders))


def guard_book_load() -> GuardBook:
    """Read what the guard needs from the database in a fixed number of queries (5)."""
    exit_orders = Order.objects.filter(
        purpose__in=[Order.Purpose.STOP_LOSS, Order.Purpose.TAKE_PROFIT],
        status__in=Order.ACTIVE_STATUSES,
    ).order_by("created_at")
    positions = list(
        Position.objects.filter(status__in=Position.OPEN_STATUSES)
        .select_related("symbol", "symbol__risk_profile")
        .prefetch_related(Prefetch("orders", queryset=exit_orders, to_attr="exit_orders"))
        .order_by("id")
    )
    states = {(s.symbol_id, s.kind): s for s in ProtectionState.objects.all()}
    busy = set(
        SymbolLock.objects.filter(expires_at__gt=timezone.now())
        .exclude(owner="")
        .values_list("symbol_id", flat=True)
    )
    return GuardBook(
        positions=positions,
        states=states,
        active_profile=RiskProfile.objects.filter(is_active=True).first(),
        busy_symbol_ids=busy,
    )


# --- protection -----------------------------------------------------------------------------------
def _position_protect(ctx: _Pass, position: Position, exchange_position: ExchangePosition) -> None:
    if position.status == Position.Status.CLOSING:
        return  # a close is on its way; a new stop would only be cancelled again
    if position.status == Position.Status.OPENING:
        if position.opened_at > ctx.now - ctx.debounce:
            return  # the entry is seconds old: the order path is placing its exits itself
        if exchange_position.side != position.side:
            return  # not this entry's position: reconcile reports it for a person
        # The entry's answer was lost (or its worker died) and it filled: the order path looks
        # it up by client id, records the fill and places TP and SL; the next pass checks them.
        outcome = order_path.position_entry_resolve(
            position=position, gateway=ctx.gateway, actor="guard"
        )
        logger.warning(
            "[Guard] %s %s: entry left opening, resolved from the exchange: %s (%s)",
            position.symbol.name,
            position.side,
            outcome.status,
            outcome.reason,
        )
        return
    for kind in (SL, TP):
        _exit_ensure(ctx, position, kind, exchange_position)


def _exit_ensure(
    ctx: _Pass, position: Position, kind: str, exchange_position: ExchangePosition
) -> None:
    if _exit_on_exchange(ctx, position, kind):
        _gap_closed(ctx, position, kind)
        return
    state = ctx.book.states.get((position.symbol_id, kind))
    if state is not None and state.position_id == position.id:
        if state.next_attempt_at is not None and state.next_attempt_at > ctx.now:
            return  # debounced: an attempt was made within the window
        profile = _profile_for(ctx, position.symbol)
        if state.gave_up_at is not None and state.rules_version == rules_version(
            position=position, profile=profile
        ):
            return  # nothing changed since the exchange refused it: do not ask again
    # Act under the symbol's lease, as the order path does, so a trade cycle placing its own
    # exits at this moment and the guard never both place one.
    try:
        with symbol_lock(position.symbol_id, LOCK_SECONDS):
            _exit_repair(ctx, position, kind, exchange_position)
    except SymbolBusy:
        return  # the order path holds the symbol; look again next pass


def _gap_closed(ctx: _Pass, position: Position, kind: str) -> None:
    state = _state_for(ctx, position.symbol, kind, position)
    if state is not None and state.gap_since is not None:
        # Someone else (the order path, an operator) put it back.
        logger.info("[Guard] %s %s in place again", position.symbol.name, KIND_NAMES[kind])
        state.gap_since = None
        state.save(update_fields=["gap_since", "updated_at"])


def _exit_repair(
    ctx: _Pass, position: Position, kind: str, exchange_position: ExchangePosition
) -> None:
    if _own_exit_pending(ctx, position, kind):
        _gap_closed(ctx, position, kind)
        return
    state = _state_for(ctx, position.symbol, kind, position)
    state = state or _state_create(position.symbol, kind, position)
    profile = _profile_for(ctx, position.symbol)
    version = rules_version(position=position, profile=profile)
    label = f"{position.symbol.name} {position.side} {KIND_NAMES[kind]}"
    if state.gave_up_at is not None:
        if state.rules_version == version:
            return  # nothing changed since the exchange refused it: do not ask again
        logger.info("[Guard] %s: rules changed since giving up, trying again", label)
        state.gave_up_at = None
        state.next_attempt_at = None
    if state.gap_since is None:
        logger.warning("[Guard] %s missing on the exchange, re-attaching", label)
        state.gap_since = ctx.now
    state.save()
    # Claim the attempt and push the next one past the debounce window before sending, so a
    # crash or a hung request cannot turn into a second stop on the next pass.
    claimed = (
        ProtectionState.objects.filter(pk=state.pk)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=ctx.now))
        .update(
            last_attempt_at=ctx.now,
            next_attempt_at=ctx.now + ctx.debounce,
            attempts=F("attempts") + 1,
        )
    )
    if not claimed:
        return  # debounced: an attempt was made within the window
    try:
        price = _exit_price(
            position=position,
            kind=kind,
            profile=profile,
            exchange_entry=exchange_position.entry_price,
        )
        order = _exit_place(ctx, position, kind, price)
    except OrderRejected as exc:
        if exc.code == WOULD_TRIGGER:
            _exit_would_trigger(ctx, position, kind, state, exc)
            return
        _give_up(ctx, state, label, version, reason=f"{exc} ({exc.code})", code=exc.code)
        return
    except (ExitTooClose, NoExitPrice) as exc:
        _give_up(ctx, state, label, version, reason=str(exc), code=None)
        return
    except TemporaryError as exc:
        # Tried again after the debounce window; said once, not on every attempt.
        if state.reason != str(exc)[:255]:
            logger.warning("[Guard] %s: exchange unavailable, will retry: %s", label, exc)
            ProtectionState.objects.filter(pk=state.pk).update(reason=str(exc)[:255])
        return
    ProtectionState.objects.filter(pk=state.pk).update(
        gap_since=None, reason="", error_code=None, updated_at=timezone.now()
    )
    logger.info(
        "[Guard] %s re-attached @ %s (%s)",
        label,
        _price_text(price, position.symbol),
        order.client_order_id,
    )
    ctx.report.reattached.append(
        f"{position.symbol.name} {kind} @ {_price_text(price, position.symbol)}"
    )


def _exit_place(ctx: _Pass, position: Position, kind: str, price: Decimal) -> Order:
    """Place the exit through the order path (client ids derived in one place), then record
    the price it protects at."""
    order = order_path.exit_order_place(
        position=position, kind=kind, price=price, gateway=ctx.gateway
    )
    field_name = "stop_loss_price" if kind == SL else "take_profit_price"
    with transaction.atomic():
        Position.objects.filter(pk=position.pk).update(**{field_name: price})
        setattr(position, field_name, price)
        TradeEvent.objects.create(
            symbol=position.symbol,
            position=position,
            kind=TradeEvent.Kind.PROTECTION,
            message=f"{KIND_NAMES[kind]} re-attached @ {price} ({order.client_order_id})",
            actor="guard",
        )
    return order


def _exit_on_exchange(ctx: _Pass, position: Position, kind: str) -> bool:
    """True when an open order on the exchange closes this position at its stop or target."""
    closing_side = "SELL" if position.side == Position.Side.LONG else "BUY"
    return any(
        order.side == closing_side
        and order.order_type in STOP_TYPES[kind]
        and (order.close_position or order.reduce_only)
        for order in ctx.snapshot.orders.get(position.symbol.name, ())
    )


def _own_exit_pending(ctx: _Pass, position: Position, kind: str) -> bool:
    """True when an exit order of ours may still show up: it is looked up by client id, since
    open-order queries can hide a new conditional order for a while."""
    for order in getattr(position, "exit_orders", ()):
        if order.purpose != kind:
            continue
        fresh = order.created_at > ctx.now - ctx.debounce
        if order.status == Order.Status.INTENT:
            if fresh:
                return True  # stored and about to be sent by the order path
            continue
        found = ctx.gateway.fetch_order(
            symbol=position.symbol.name,
            client_order_id=order.client_order_id,
            conditional=order.is_conditional,
        )
        if found is None:
            if fresh:
                return True  # the send may still be on its way
            _order_status_set(order, Order.Status.EXPIRED, note="not found on the exchange")
            continue
        if order.status != _order_status_of(found):
            order_path.order_refresh(order=order, found=found)
        if found.status in WORKING or found.status in FIRED:
            # Working but hidden from the lists, or fired (the position is closing; the next
            # pass records the close): either way a second order must not be placed.
            return True
    return False


def _order_status_of(found: ExchangeOrder) -> str:
    return order_path.order_status_of(found)


def _order_status_set(order: Order, status: str, *, note: str = "") -> None:
    if order.status == status:
        return
    changes: dict[str, object] = {"status": status, "updated_at": timezone.now()}
    if note:
        changes["error_message"] = note
    # Conditional on the status we read, so a concurrent update by the order path wins.
    Order.objects.filter(pk=order.pk, status=order.status).update(**changes)
    order.status = status


def _give_up(
    ctx: _Pass, state: ProtectionState, label: str, version: str, *, reason: str, code: int | None
) -> None:
    ProtectionState.objects.filter(pk=state.pk).update(
        gave_up_at=ctx.now,
        # No debounce while given up: the rules changing is what allows the next attempt.
        next_attempt_at=None,
        reason=reason[:255],
        error_code=code,
        rules_version=version,
        updated_at=timezone.now(),
    )
    logger.error(
        "[Guard] %s refused, not retried until the rules change or it is cleared in the admin: %s",
        label,
        reason,
    )
    ctx.report.gave_up.append(label)
    alert_raise(
        key=f"guard.gave_up.{state.symbol.name}.{state.kind}",
        severity="critical",
        message=f"{label} could not be re-attached and is not retried until its rules change "
        f"or it is cleared in the admin: {reason.rstrip('.')}. The position is unprotected.",
        symbol=state.symbol,
        repeat_seconds=ctx.rules.alert_repeat_seconds,
    )


def _exit_would_trigger(
    ctx: _Pass, position: Position, kind: str, state: ProtectionState, exc: OrderRejected
) -> None:
    """The price is already through the stop or target: do what the order would have done."""
    reason = Position.CloseReason.STOP_LOSS if kind == SL else Position.CloseReason.TAKE_PROFIT
    label = f"{position.symbol.name} {position.side} {KIND_NAMES[kind]}"
    logger.warning("[Guard] %s would trigger at once; closing the position at market", label)
    outcome = order_path.position_close(
        position=position, reason=reason, forced_event=True, gateway=ctx.gateway, actor="guard"
    )
    if outcome.ok:
        ProtectionState.objects.filter(pk=state.pk).update(gap_since=None, reason=str(exc)[:255])
        ctx.report.closed.append(f"{position.symbol.name} {reason} (would have triggered)")
        return
    alert_raise(
        key=f"guard.would_trigger_close_failed.{position.symbol.name}",
        severity="critical",
        message=f"{label} would trigger at once, and closing {position} failed: {outcome}. "
        "The position is unprotected.",
        symbol=position.symbol,
        repeat_seconds=ctx.rules.alert_repeat_seconds,
    )


# --- positions gone, unknown, orphan orders -------------------------------------------------------
def _position_gone(ctx: _Pass, position: Position) -> None:
    if position.status == Position.Status.OPENING:
        return  # the entry has not filled (yet): the order path's business
    if position.status == Position.Status.CLOSING and position.opened_at > ctx.now - ctx.debounce:
        return  # the order path is recording its own close right now
    # The order path's service reads the fills (exit price, PnL, fees), works out what closed
    # it from which of our orders fired, cancels the position's remaining exits and logs the
    # "[Close] SL @ 99700.0 | PnL -3.30 USDT" line.
    outcome = order_path.position_record_exchange_close(
        position=position, gateway=ctx.gateway, actor="guard"
    )
    if outcome.status == order_path.CloseOutcome.CLOSED:
        closed = outcome.position or position
        ctx.report.closed.append(
            f"{position.symbol.name} {closed.close_reason} @ {closed.exit_price} "
            f"PnL {closed.realized_pnl}"
        )
        return
    # Tried again next pass; said once per alert window rather than every 5 s.
    alert_raise(
        key=f"guard.close_not_recorded.{position.symbol.name}",
        severity="warning",
        message=f"{position} is flat on the exchange but its close could not be recorded yet: "
        f"{outcome}",
        symbol=position.symbol,
        repeat_seconds=ctx.rules.alert_repeat_seconds,
    )


def _unknown_positions(ctx: _Pass, recorded: set[str]) -> None:
    unknown = [p for name, p in ctx.snapshot.positions.items() if name not in recorded]
    names = {p.symbol for p in unknown}
    # Clear the memory of unknown positions that are gone or recorded now.
    for (_, kind), state in ctx.book.states.items():
        if kind == UNKNOWN and state.gap_since is not None:
            if state.symbol.name not in names:
                logger.info(
                    "[Guard] %s: the unrecorded position is gone or recorded now", state.symbol.name
                )
                state.gap_since = None
                state.save(update_fields=["gap_since", "updated_at"])
    if not unknown:
        return
    symbols = {s.name: s for s in Symbol.objects.filter(name__in=names)}
    policy = ctx.rules.unknown_position_policy
    for exchange_position in unknown:
        symbol = symbols.get(exchange_position.symbol)
        description = (
            f"{exchange_position.symbol} {exchange_position.side} {exchange_position.quantity} "
            f"@ {exchange_position.entry_price}"
        )
        ctx.report.unknown.append(description)
        if symbol is None or policy == MonitoringSettings.UnknownPositionPolicy.REPORT:
            _unknown_report(ctx, symbol, exchange_position, description)
            continue
        position = _position_adopt(ctx, symbol, exchange_position)
        ctx.report.adopted.append(description)
        alert_raise(
            key=f"guard.adopted.{symbol.name}",
            severity="warning",
            message=f"Adopted a position found on the exchange with no record here: "
            f"{description}" + (" - closing it (rule)." if policy == "close" else "."),
            symbol=symbol,
            repeat_seconds=ctx.rules.alert_repeat_seconds,
        )
        if policy == MonitoringSettings.UnknownPositionPolicy.CLOSE:
            outcome = order_path.position_close(
                position=position,
                reason=Position.CloseReason.RISK,
                forced_event=True,
                gateway=ctx.gateway,
                actor="guard",
            )
            if outcome.ok:
                ctx.report.closed.append(f"{symbol.name} {Position.CloseReason.RISK} (unknown)")
            else:
                alert_raise(
                    key=f"guard.unknown_close_failed.{symbol.name}",
                    severity="critical",
                    message=f"Adopted {description} but could not close it: {outcome}",
                    symbol=symbol,
                    repeat_seconds=ctx.rules.alert_repeat_seconds,
                )


def _position_adopt(ctx: _Pass, symbol: Symbol, exchange_position: ExchangePosition) -> Position:
    """Record an unknown exchange position here; the next pass protects it like any other."""
    profile = _profile_for(ctx, symbol)
    take_profit = stop_loss = None
    if profile is not None:
        try:
            take_profit, stop_loss = exit_prices(
                side=exchange_position.side,
                entry_price=exchange_position.entry_price,
                take_profit_pct=profile.take_profit_pct,
                stop_loss_pct=profile.stop_loss_pct,
                filters=symbol.filters,
            )
        except ExitTooClose:
            pass  # the guard will give up on its exits and say why
    with transaction.atomic():
        position = Position.objects.create(
            symbol=symbol,
            side=exchange_position.side,
            status=Position.Status.OPEN,
            quantity=exchange_position.quantity,
            entry_price=exchange_position.entry_price,
            leverage=exchange_position.leverage,
            margin_type=exchange_position.margin_type,
            take_profit_price=take_profit,
            stop_loss_price=stop_loss,
            opened_reason="adopted by the guard: found on the exchange with no record here",
            adopted=True,
        )
        TradeEvent.objects.create(
            symbol=symbol,
            position=position,
            kind=TradeEvent.Kind.OPENED,
            message=f"adopted {exchange_position.side} {exchange_position.quantity} @ "
            f"{exchange_position.entry_price} found on the exchange",
            actor="guard",
        )
    logger.warning("[Guard] adopted %s", position)
    return position


def _unknown_report(
    ctx: _Pass, symbol: Symbol | None, exchange_position: ExchangePosition, description: str
) -> None:
    message = (
        f"Position on the exchange with no record here: {description}. "
        f"Policy: {ctx.rules.get_unknown_position_policy_display()}"
        + ("" if symbol else " (symbol not configured here, so it can only be reported)")
        + "."
    )
    if symbol is not None:
        state = ctx.book.states.get((symbol.id, UNKNOWN))
        if state is not None and state.gap_since is not None:
            return  # reported already
        state = state or _state_create(symbol, UNKNOWN, None)
        state.gap_since = ctx.now
        state.reason = description[:255]
        state.save()
        ctx.book.states[(symbol.id, UNKNOWN)] = state
        logger.warning("[Guard] %s", message)
    alert_raise(
        key=f"guard.unknown_position.{exchange_position.symbol}",
        severity="critical",
        message=message,
        symbol=symbol,
        repeat_seconds=ctx.rules.alert_repeat_seconds,
    )


def _orphan_orders_cancel(ctx: _Pass, recorded: set[str]) -> None:
    """Cancel our orders in symbols with no position here nor on the exchange."""
    for symbol, orders in ctx.snapshot.orders.items():
        if symbol in recorded or symbol in ctx.snapshot.positions:
            continue
        for order in orders:
            if not order.client_order_id.startswith(order_path.CLIENT_ID_PREFIX):
                continue  # not ours: an operator's order is theirs to manage
            if ctx.gateway.cancel_order(
                symbol=symbol,
                client_order_id=order.client_order_id,
                conditional=order.is_conditional,
            ):
                logger.info(
                    "[Guard] %s: cancelled order %s left without a position",
                    symbol,
                    order.client_order_id,
                )
            ctx.report.cancelled.append(order.client_order_id)
            Order.objects.filter(
                client_order_id=order.client_order_id, status__in=Order.ACTIVE_STATUSES
            ).update(status=Order.Status.CANCELED, updated_at=timezone.now())


def _post_trade_checks(ctx: _Pass) -> None:
    positions = [
        p
        for p in ctx.book.positions
        if p.status == Position.Status.OPEN
        and p.symbol.name in ctx.snapshot.positions
        and p.symbol_id not in ctx.book.busy_symbol_ids
    ]
    if not positions:
        return
    # One balance read per pass, not per position: requests stay flat as positions grow.
    equity = ctx.gateway.fetch_balance().equity
    for position in positions:
        profile = _profile_for(ctx, position.symbol)
        if profile is None or not position.entry_price or not position.quantity:
            continue
        # The sizing module's arithmetic on the rows already loaded: the common case (within
        # limits) costs no query. Over the limit, the order path's check decides again on fresh
        # rows and does the partial close.
        excess = position_excess(position=position, profile=profile, equity=equity)
        if not excess.over_limit:
            continue
        try:
            post_trade_check(position=position, gateway=ctx.gateway, equity=equity)
        except ArenaError as exc:
            alert_raise(
                key=f"guard.post_trade_check.{position.symbol.name}",
                severity="warning",
                message=f"Post-trade check of {position} failed: {exc}",
                symbol=position.symbol,
                repeat_seconds=ctx.rules.alert_repeat_seconds,
            )


# --- helpers --------------------------------------------------------------------------------------
class NoExitPrice(ValueError):
    """Neither a recorded price nor the rules give an exit price (no entry, no profile)."""


def rules_version(*, position: Position, profile: RiskProfile | None) -> str:
    """A fingerprint of everything that decides an exit's price and validity: the symbol's
    filters, the exit rules and the position's recorded prices. A give-up under one version
    is retried only under another."""
    symbol = position.symbol
    parts = [
        symbol.tick_size,
        symbol.price_precision,
        symbol.step_size,
        symbol.quantity_precision,
        symbol.min_qty,
        symbol.min_notional,
        position.take_profit_price,
        position.stop_loss_price,
        position.entry_price,
    ]
    if profile is not None:
        parts += [profile.pk, profile.take_profit_pct, profile.stop_loss_pct]
    text = "|".join("" if p is None else _canonical(p) for p in parts)
    return hashlib.sha1(text.encode()).hexdigest()


def _canonical(value: object) -> str:
    return f"{value.normalize():f}" if isinstance(value, Decimal) else str(value)


def _exit_price(
    *, position: Position, kind: str, profile: RiskProfile | None, exchange_entry: Decimal
) -> Decimal:
    """The recorded price, put on the current tick toward the entry; else from the rules and
    the entry price (the exchange's when ours is unknown: an entry whose answer was lost)."""
    filters = position.symbol.filters
    recorded = position.stop_loss_price if kind == SL else position.take_profit_price
    if recorded:
        toward_entry_is_up = (kind == SL) == (position.side == Position.Side.LONG)
        rounder = round_price_up if toward_entry_is_up else round_price_down
        return rounder(recorded, filters)
    entry_price = position.entry_price or exchange_entry or None
    if entry_price is None or profile is None:
        raise NoExitPrice(
            f"no recorded {KIND_NAMES[kind]} price and no "
            + ("entry price" if profile else "risk profile")
            + " to compute it from"
        )
    take_profit, stop_loss = exit_prices(
        side=position.side,
        entry_price=entry_price,
        take_profit_pct=profile.take_profit_pct,
        stop_loss_pct=profile.stop_loss_pct,
        filters=filters,
    )
    return stop_loss if kind == SL else take_profit


def _profile_for(ctx: _Pass, symbol: Symbol) -> RiskProfile | None:
    return symbol.risk_profile if symbol.risk_profile_id else ctx.book.active_profile


def _state_for(
    ctx: _Pass, symbol: Symbol, kind: str, position: Position | None
) -> ProtectionState | None:
    state = ctx.book.states.get((symbol.id, kind))
    if state is not None and position is not None and state.position_id != position.id:
        # A new position in the symbol: what the guard learnt about the old one does not apply.
        state.position = position
        state.gap_since = state.gave_up_at = state.next_attempt_at = None
        state.reason, state.error_code, state.rules_version, state.attempts = "", None, "", 0
        state.save()
    return state


def _state_create(symbol: Symbol, kind: str, position: Position | None) -> ProtectionState:
    state, _ = ProtectionState.objects.get_or_create(
        symbol=symbol, kind=kind, defaults={"position": position}
    )
    state.symbol = symbol
    return state


def _price_text(value: Decimal, symbol: Symbol) -> str:
    """A price with the tick's decimals at least: 99700.0, not 99700 or 9.97E+4."""
    tick_places = max(0, -symbol.tick_size.normalize().as_tuple().exponent)
    own_places = max(0, -value.normalize().as_tuple().exponent)
    return f"{value:.{max(tick_places, own_places)}f}"
