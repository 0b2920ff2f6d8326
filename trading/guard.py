"""The guard: every 5 s, every position on the exchange keeps its stop-loss and take-profit.

The exchange is the truth. A pass reads only what it needs, at the lowest weight
(``trading.guard_reads``): the conditional orders of the symbols it watches, one query each
while that is cheaper than the all-symbol query, then the positions of all symbols; every five
minutes a sweep reads every open order of every symbol instead; the balance only when the
post-trade check needs it. Its requests depend on the symbols it watches, not on the number of
positions beyond that, and it reads the database with a fixed number of queries; then, for every
non-zero position on the exchange whatever its record here says (OPENING, OPEN, CLOSING, none):

- a stop-loss and a take-profit that close the position the exchange holds (its side, not the
  recorded one) must be on the exchange; a missing one is placed under a client id derived from
  the position, so the order path and the guard placing it at the same moment send one order;
- our own order placed moments ago may be missing from open-order queries (Binance has hidden
  new conditional orders for ~30 s): it is looked up by client id before anything is re-placed;
- a refused placement is recomputed from the current mark and the rules and tried again next
  pass; after ``CLOSE_AFTER_FAILED_PASSES`` failed passes, or when the mark is already through
  the stop, the position is closed at market (reduce-only) and an alert says so;
- a position recorded CLOSING that the exchange still holds goes back to OPEN (with an event
  row), is protected, and its close is retried; an entry left OPENING is resolved from the
  exchange by the order path's ``position_entry_resolve``;
- a position gone from the exchange is recorded closed with the exchange's exit price and PnL;
- a position with no record here is protected (default), reported or closed (a rule), with an
  alert; our orders with no position are cancelled;
- the post-trade risk check runs for each open position.

Protection never waits for a trade cycle's symbol lock: the lock guards the entry decision, and
the deterministic exit ids make the guard and the order path unable to double-place an exit.
The open-order reads come before the position read, so a stop that fires while the pass reads
shows as a flat symbol (nothing placed), never as a position missing its stop; and nothing is
said about a position younger than the pass's own snapshot.

It logs a gap once when found and once when fixed, never a line per pass. Passes never overlap:
a pass holds a lease, and a pass that finds it held skips and is counted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch, Q
from django.utils import timezone

from core.errors import ArenaError, OrderRejected, TemporaryError
from core.models import Heartbeat, Lease, MonitoringSettings
from core.notify import alert_raise
from core.selectors import monitoring_settings
from core.services import (
    heartbeat_record,
    lease_claim,
    lease_held,
    lease_release,
)
from exchange.gateway import WOULD_TRIGGER, ExchangeGateway, ExchangePosition
from exchange.retry import RetryPolicy
from exchange.rounding import ExitTooClose, exit_prices, round_price_down, round_price_up
from risk.models import RiskProfile
from risk.sizing import position_excess
from trading import fills
from trading import services as order_path
from trading.comparison import (
    EXIT_KIND_NAMES,
    ExchangeSnapshot,
    exchange_snapshot,
    exit_on_exchange,
)
from trading.exchange_view import exchange_view_store
from trading.gateway import exchange_backoff_until, exchange_gateway
from trading.locks import SymbolBusy, symbol_lock, symbol_lock_held_by_live_process
from trading.models import Order, Position, ProtectionState, Symbol, SymbolLock, TradeEvent
from trading.post_trade import post_trade_check
from trading.transitions import orders_transition, position_create, position_transition

logger = logging.getLogger(__name__)

LEASE_NAME = "guard"
# Memory rows of what a pass does only now and then, shared by every guard process (their
# expiry is when it is due again). The sweep reads every open order of every symbol, regular
# and conditional (weight 80 instead of one per watched symbol): orders of ours the database
# links to nothing live (a restored database) and the operator's orders are seen at least this
# often. The balance is read at most this often unless a pass needs it now (see
# ``_equity_if_needed``).
SWEEP_LEASE_NAME = "guard-sweep"
SWEEP_EVERY = timedelta(minutes=5)
BALANCE_LEASE_NAME = "guard-balance"
BALANCE_EVERY = timedelta(seconds=60)
CADENCE_LEASES = (SWEEP_LEASE_NAME, BALANCE_LEASE_NAME)
# Held by a running guard process (``manage.py guard``), renewed every loop: while it is held,
# Beat's guard task, the fallback for deployments without that process, runs no pass of its own
# (two guards would spend the minute's request weight twice).
PROCESS_LEASE_NAME = "guard-process"
# The order path places a new position's exits right after its entry fills (one round trip);
# the guard lets it do so this long before it places them itself and alerts.
ENTRY_PROTECTION_GRACE = timedelta(seconds=2)
# A failing guard is alerted once its passes have failed this long without one success: the
# guard process starting a moment before the exchange answers is not an incident.
FAILING_ALERT_AFTER = timedelta(seconds=15)
# The guard holds a symbol only for one re-attach: a few requests, retries included.
LOCK_SECONDS = 60.0
# An exit that cannot be placed in this many passes in a row: the position is closed instead.
CLOSE_AFTER_FAILED_PASSES = 3
# Longest one exchange call of a pass spends retrying temporary errors.
GUARD_RETRY_SECONDS = 2.0
SL = ProtectionState.Kind.STOP_LOSS
TP = ProtectionState.Kind.TAKE_PROFIT
UNKNOWN = ProtectionState.Kind.UNKNOWN_POSITION
KIND_NAMES = EXIT_KIND_NAMES
# An equity so large that only the rules' max risk caps the allowed margin: a position over the
# limit with it is over the limit whatever the account holds.
ANY_EQUITY = Decimal("Infinity")


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
    closed: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    # Exits not placed this pass (retried next pass) and positions whose check failed.
    failed: list[str] = field(default_factory=list)
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
            ("closed", self.closed),
            ("adopted", self.adopted),
            ("unknown", self.unknown),
            ("cancelled", self.cancelled),
            ("failed", self.failed),
        ):
            if items:
                parts.append(f"{label}: {', '.join(items)}")
        if self.error:
            parts.append(f"error: {self.error}")
        return " | ".join(parts)


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
    leases: dict[str, Lease] = field(default_factory=dict)

    @property
    def debounce(self) -> timedelta:
        return timedelta(seconds=self.rules.reattach_debounce_seconds)


# --- the pass -------------------------------------------------------------------------------------
def guard_pass(*, gateway: ExchangeGateway | None = None) -> GuardReport:
    """Run one guard pass (skipped when the previous one still holds the lease)."""
    rules = monitoring_settings()
    owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _lease_free_if_holder_dead()
    if not lease_claim(name=LEASE_NAME, owner=owner, seconds=rules.guard_lease_seconds):
        return GuardReport(skipped=True)
    report = GuardReport()
    started_at, started = timezone.now(), time.monotonic()
    requests_before = 0
    failure: BaseException | None = None
    try:
        paused_until = exchange_backoff_until()
        if paused_until is not None:
            # Rate-limited or banned (the wait every process honours, from the request log): a
            # request now would only lengthen the ban.
            raise GuardPaused(f"rate limited by the exchange until {paused_until:%H:%M:%S} UTC")
        # A short retry budget: the guard's retry is its next pass, and one exit retrying for
        # twenty seconds would hold every other position of the pass back.
        gateway = gateway or exchange_gateway(
            retry_policy=RetryPolicy(
                max_total_seconds=min(settings.EXCHANGE_RETRY_MAX_SECONDS, GUARD_RETRY_SECONDS)
            )
        )
        requests_before = gateway.request_count
        _guard_run(gateway=gateway, rules=rules, report=report)
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
    failing_long = bool(report.error) and (
        _failing_since(started_at) <= started_at - FAILING_ALERT_AFTER
    )
    if transition == "new":
        # Once per new error, not every 5 s; a traceback only where it is not the exchange's.
        # A warning until the failures have lasted: then the alert below says it as an error.
        traceback = None if isinstance(failure, ArenaError) or failure is None else failure
        level = logging.ERROR if failing_long else logging.WARNING
        logger.log(level, "[Guard] pass failed: %s", report.error, exc_info=traceback)
    if failing_long:
        alert_raise(
            key="guard.failing",
            severity="critical",
            message=f"The guard cannot complete its passes: {report.error}",
            repeat_seconds=rules.alert_repeat_seconds,
        )
    elif transition == "cleared":
        logger.info("[Guard] passes complete again")
    return report


def guard_process_running() -> bool:
    """Whether a guard process is alive and passing (see ``PROCESS_LEASE_NAME``)."""
    return lease_held(name=PROCESS_LEASE_NAME)


def _failing_since(now: datetime) -> datetime:
    """When the current run of failed passes began: the first failed pass after the last one
    that succeeded (``now`` when this failure is the first)."""
    passes = Heartbeat.objects.filter(process=Heartbeat.Process.GUARD)
    last_ok = passes.filter(ok=True).values_list("finished_at", flat=True).first()
    failed = passes.filter(ok=False)
    if last_ok is not None:
        failed = failed.filter(finished_at__gt=last_ok)
    first_failed = failed.order_by("finished_at").values_list("started_at", flat=True).first()
    return min(first_failed, now) if first_failed is not None else now


def _lease_free_if_holder_dead() -> None:
    """Free the lease of a pass killed on this host (its process is gone), so the restarted
    guard protects at once instead of waiting out the lease (a minute by default)."""
    owner = Lease.objects.filter(name=LEASE_NAME).values_list("owner", flat=True).first()
    host, _, rest = (owner or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:30] or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        # Conditional on the owner we read: a pass that claimed it meanwhile keeps it.
        if Lease.objects.filter(name=LEASE_NAME, owner=owner).update(owner="", expires_at=None):
            logger.warning("[Guard] the previous pass (%s) died holding the lease: freed", owner)
    except PermissionError:
        return  # alive, another user's process


def _guard_run(*, gateway: ExchangeGateway, rules: MonitoringSettings, report: GuardReport) -> None:
    leases = _cadence_leases()
    sweep = _sweep_claim(leases, timezone.now())
    watched = None if sweep else guard_watched_symbols()
    snapshot = exchange_snapshot(gateway=gateway, watched=watched)
    book = guard_book_load()
    ctx = _Pass(gateway, rules, snapshot, book, report, timezone.now(), leases)
    report.positions = len(snapshot.positions)
    recorded = {p.symbol.name for p in book.positions}
    for position in book.positions:
        live = snapshot.positions.get(position.symbol.name)
        try:
            if live is None:
                _position_flat(ctx, position)
            else:
                _position_live(ctx, position, live)
        except ArenaError as exc:
            # One symbol's failure (the exchange refusing a read, a lock) must not leave the
            # other positions of this pass unchecked; this one is looked at again next pass.
            logger.warning("[Guard] %s: %s: %s", position.symbol.name, type(exc).__name__, exc)
            report.failed.append(f"{position.symbol.name}: {exc}")
    _unknown_positions(ctx, recorded)
    _orphan_orders_cancel(ctx, recorded)
    _post_trade_checks(ctx)
    fills.positions_books_complete(gateway=gateway, actor="guard")
    exchange_view_store(
        positions=snapshot.positions.values(), orders=snapshot.orders, taken_at=snapshot.taken_at
    )


def guard_watched_symbols() -> set[str]:
    """The symbols whose orders a pass reads (1 query): a position recorded open (or opening,
    or closing), an order of ours recorded live, or a reported unknown position.

    Every order of ours is stored before it is sent (its client id comes from its row) and
    leaves the live statuses only on the exchange's word, so every symbol where one of our
    orders can be working is here; symbols where the exchange shows a position are added by
    the snapshot itself. What else may be on the exchange (an operator's orders, ours from a
    restored database) is left to the sweep.
    """
    live_positions = Position.objects.filter(status__in=Position.OPEN_STATUSES)
    live_orders = Order.objects.filter(status__in=Order.ACTIVE_STATUSES)
    reported = ProtectionState.objects.filter(kind=UNKNOWN, gap_since__isnull=False)
    return set(
        Symbol.objects.filter(
            Q(id__in=live_positions.values("symbol_id"))
            | Q(id__in=live_orders.values("symbol_id"))
            | Q(id__in=reported.values("symbol_id"))
        ).values_list("name", flat=True)
    )


def _cadence_leases() -> dict[str, Lease]:
    """The sweep's and the balance's memory rows (1 query)."""
    return {lease.name: lease for lease in Lease.objects.filter(name__in=CADENCE_LEASES)}


def _sweep_claim(leases: dict[str, Lease], now: datetime) -> bool:
    """Whether this pass sweeps: the last sweep is ``SWEEP_EVERY`` old (or none yet). Claimed by
    a conditional update on the expiry read, so of two guards racing only one sweeps."""
    lease = leases.get(SWEEP_LEASE_NAME)
    if lease is None:
        _, created = Lease.objects.get_or_create(
            name=SWEEP_LEASE_NAME, defaults={"owner": "guard", "expires_at": now + SWEEP_EVERY}
        )
        return created
    if lease.expires_at is not None and lease.expires_at > now:
        return False
    return bool(
        Lease.objects.filter(name=SWEEP_LEASE_NAME, expires_at=lease.expires_at).update(
            owner="guard", expires_at=now + SWEEP_EVERY
        )
    )


def guard_book_load() -> GuardBook:
    """Read what the guard needs from the database in a fixed number of queries (5)."""
    # Every exit order, not only the working ones: their count is the next exit's generation.
    exit_orders = Order.objects.filter(
        purpose__in=[Order.Purpose.STOP_LOSS, Order.Purpose.TAKE_PROFIT]
    ).order_by("created_at", "id")
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
def _position_live(ctx: _Pass, position: Position, live: ExchangePosition) -> None:
    """The exchange holds a position in this symbol: protect it first, whatever our record says,
    then bring the record in line (without waiting for a symbol another worker holds)."""
    done = [_exit_ensure(ctx, position, kind, live) for kind in (SL, TP)]
    if CLOSED_INSTEAD in done:
        return
    if all(d == IN_PLACE for d in done):
        _wrong_side_exits_cancel(ctx, live)
    if position.status == Position.Status.OPENING and position.opened_at < ctx.snapshot.taken_at:
        # The entry's answer was lost (or its worker died) and it filled: the order path looks
        # it up by client id and records the fill; its own exits find ours already stored.
        outcome = order_path.position_entry_resolve(
            position=position, gateway=ctx.gateway, actor="guard"
        )
        if outcome.status != order_path.OpenOutcome.REFUSED:
            logger.warning(
                "[Guard] %s %s: entry left opening, resolved from the exchange: %s (%s)",
                position.symbol.name,
                position.side,
                outcome.status,
                outcome.reason,
            )
    elif position.status == Position.Status.CLOSING:
        _closing_retry(ctx, position, live)


def _wrong_side_exits_cancel(ctx: _Pass, live: ExchangePosition) -> None:
    """Cancel our exits left from before a flip by hand: they close a side the exchange no
    longer holds. Only once the right side is protected; an operator's own orders are theirs."""
    opening_side = "BUY" if live.side == Position.Side.LONG else "SELL"
    for order in ctx.snapshot.orders.get(live.symbol, ()):
        if order.side != opening_side or not (order.close_position or order.reduce_only):
            continue
        if not order.client_order_id.startswith(order_path.CLIENT_ID_PREFIX):
            continue
        ctx.gateway.cancel_order(
            symbol=live.symbol,
            client_order_id=order.client_order_id,
            conditional=order.is_conditional,
        )
        orders_transition(
            Order.objects.filter(
                client_order_id=order.client_order_id, status__in=Order.ACTIVE_STATUSES
            ),
            Order.Status.CANCELED,
            reason="an exit of the side the exchange no longer holds",
            actor="guard",
        )
        ctx.report.cancelled.append(order.client_order_id)
        logger.info(
            "[Guard] %s: cancelled %s, an exit of the side the exchange no longer holds",
            live.symbol,
            order.client_order_id,
        )


def _closing_retry(ctx: _Pass, position: Position, live: ExchangePosition) -> None:
    """CLOSING here, still on the exchange: the close failed or was never sent. Back to OPEN
    (with its event row) and the forced close tried again, unless a close is in flight now."""
    try:
        with symbol_lock(position.symbol_id, LOCK_SECONDS):
            if not _transition(
                position,
                old=Position.Status.CLOSING,
                new=Position.Status.OPEN,
                message=f"close did not complete: the exchange still holds {live.side} "
                f"{live.quantity}; back to OPEN, protected, close retried",
            ):
                return
            alert_raise(
                key=f"guard.close_incomplete.{position.symbol.name}",
                severity="critical",
                message=f"{position} was recorded closing but the exchange still holds "
                f"{live.side} {live.quantity}: protected by the guard, close retried.",
                symbol=position.symbol,
                repeat_seconds=ctx.rules.alert_repeat_seconds,
            )
            outcome = order_path.position_close(
                position=position,
                reason=Position.CloseReason.EMERGENCY,
                forced_event=True,
                gateway=ctx.gateway,
                actor="guard",
            )
    except SymbolBusy:
        return  # a close (or an entry) is being worked on right now; look again next pass
    if outcome.ok:
        ctx.report.closed.append(f"{position.symbol.name} close retried")
    else:
        logger.warning("[Guard] %s: retried close did not complete: %s", position, outcome)


def _transition(position: Position, *, old: str, new: str, message: str) -> bool:
    """Move ``position`` from ``old`` to ``new`` with its event row; False if it was not ``old``."""
    if position.status != old:
        return False
    with transaction.atomic():
        moved = position_transition(position, new, reason=message, actor="guard")
        if moved:
            TradeEvent.objects.create(
                symbol=position.symbol,
                position=position,
                kind=TradeEvent.Kind.PROTECTION,
                message=f"{old} -> {new}: {message}"[:500],
                actor="guard",
            )
    if moved:
        logger.warning("[Guard] %s: %s -> %s: %s", position.symbol.name, old, new, message)
    return bool(moved)


def _entry_protection_in_flight(ctx: _Pass, position: Position, kind: str) -> bool:
    """Whether the cycle that opened ``position`` is still placing this exit: the position is
    younger than ``ENTRY_PROTECTION_GRACE``, the cycle holds the symbol's lease and is alive, and
    no exit of this kind was ever acknowledged by the exchange. Past the grace the guard places
    it (and says so) whatever the cycle is doing."""
    if ctx.now - position.opened_at > ENTRY_PROTECTION_GRACE:
        return False
    acknowledged = any(
        o.purpose == kind and o.exchange_order_id for o in getattr(position, "exit_orders", ())
    )
    return not acknowledged and symbol_lock_held_by_live_process(position.symbol_id)


# What _exit_ensure did.
IN_PLACE, PLACED, PENDING, FAILED, CLOSED_INSTEAD = (
    "in place",
    "placed",
    "pending",
    "failed",
    "closed",
)


def _exit_ensure(ctx: _Pass, position: Position, kind: str, live: ExchangePosition) -> str:
    """Make sure one exit of the right side is on the exchange; return what was done."""
    if _exit_on_exchange(ctx, live, kind):
        _gap_closed(ctx, position, kind)
        return IN_PLACE
    working, unsent = _own_exit_lookup(ctx, position, kind, live)
    if working:
        _gap_closed(ctx, position, kind)
        return IN_PLACE
    if _entry_protection_in_flight(ctx, position, kind):
        return PENDING
    state = _state_for(ctx, position.symbol, kind, position) or _state_create(
        position.symbol, kind, position
    )
    ctx.book.states[(position.symbol_id, kind)] = state
    label = f"{position.symbol.name} {live.side} {KIND_NAMES[kind]}"
    if state.gap_since is None:
        logger.warning("[Guard] %s missing on the exchange, placing it", label)
        state.gap_since = ctx.now
        state.attempts = 0
        state.gave_up_at = None
        state.save()
        # Said once per gap (and alert window): the opening cycle's own protection in flight
        # was let be above, so this is a real gap, however short.
        alert_raise(
            key=f"guard.exit_missing.{position.symbol.name}.{kind}",
            severity="warning",
            message=f"{label} was missing on the exchange ({position.status} here): the guard "
            "is placing it.",
            symbol=position.symbol,
            repeat_seconds=ctx.rules.alert_repeat_seconds,
        )
    try:
        # After a refused attempt the recorded price is not sent again: recomputed from the
        # rules and the current filters, and checked against the current mark.
        price = _exit_price(
            position=position,
            kind=kind,
            profile=_profile_for(ctx, position.symbol),
            live=live,
            recompute=state.attempts > 0,
        )
        if kind == SL and _crossed(live, price):
            return _close_unprotectable(
                ctx,
                position,
                state,
                label,
                f"the mark {live.mark_price} is already through {price}",
            )
        if unsent is not None:
            price = unsent.stop_price
            order = order_path.exit_order_send(order=unsent, gateway=ctx.gateway)
        else:
            order = _exit_place(ctx, position, kind, price, live)
    except order_path.ExitInFlight:
        return PENDING  # stored by the order path a moment ago: it is being sent
    except OrderRejected as exc:
        if exc.code == WOULD_TRIGGER:
            return _close_unprotectable(ctx, position, state, label, f"{exc} ({exc.code})")
        return _exit_failed(ctx, position, state, label, f"{exc} ({exc.code})", exc.code)
    except (ExitTooClose, NoExitPrice, TemporaryError) as exc:
        return _exit_failed(ctx, position, state, label, str(exc), None)
    ProtectionState.objects.filter(pk=state.pk).update(
        gap_since=None,
        gave_up_at=None,
        attempts=0,
        reason="",
        error_code=None,
        updated_at=timezone.now(),
    )
    state.gap_since = state.gave_up_at = None
    logger.info(
        "[Guard] %s placed @ %s (%s)",
        label,
        _price_text(price, position.symbol),
        order.client_order_id,
    )
    ctx.report.reattached.append(
        f"{position.symbol.name} {kind} @ {_price_text(price, position.symbol)}"
    )
    return PLACED


def _crossed(live: ExchangePosition, stop: Decimal) -> bool:
    """True when the mark is already at or through the stop (it would trigger at once)."""
    if not live.mark_price:
        return False
    if live.side == Position.Side.LONG:
        return live.mark_price <= stop
    return live.mark_price >= stop


def _exit_failed(
    ctx: _Pass,
    position: Position,
    state: ProtectionState,
    label: str,
    reason: str,
    code: int | None,
) -> str:
    """A failed pass for this exit: said loudly, tried again next pass from the current mark and
    rules; after ``CLOSE_AFTER_FAILED_PASSES`` failed passes the position is closed instead."""
    attempts = state.attempts + 1
    ProtectionState.objects.filter(pk=state.pk).update(
        attempts=attempts,
        last_attempt_at=ctx.now,
        reason=reason[:255],
        error_code=code,
        updated_at=timezone.now(),
    )
    state.attempts = attempts
    if attempts >= CLOSE_AFTER_FAILED_PASSES:
        return _close_unprotectable(
            ctx, position, state, label, f"{attempts} passes failed, the last: {reason}"
        )
    logger.warning(
        "[Guard] %s not placed (pass %d), retried next pass: %s", label, attempts, reason
    )
    ctx.report.failed.append(f"{label}: {reason}")
    alert_raise(
        key=f"guard.exit_failed.{position.symbol.name}.{state.kind}",
        severity="critical",
        message=f"{label} could not be placed: {reason.rstrip('.')}. The position is "
        f"unprotected; retried every pass, closed after {CLOSE_AFTER_FAILED_PASSES} failed "
        "passes.",
        symbol=position.symbol,
        repeat_seconds=ctx.rules.alert_repeat_seconds,
    )
    return FAILED


def _close_unprotectable(
    ctx: _Pass, position: Position, state: ProtectionState, label: str, why: str
) -> str:
    """Close at market (reduce-only) a position the guard cannot protect, and say so."""
    logger.error("[Guard] %s cannot be placed (%s): closing the position at market", label, why)
    ProtectionState.objects.filter(pk=state.pk).update(gave_up_at=ctx.now, reason=why[:255])
    outcome = _close_whatever_is_held(ctx, position, state.kind)
    closed = outcome is not None and outcome.ok
    alert_raise(
        key=f"guard.unprotectable.{position.symbol.name}",
        severity="critical",
        message=f"{label} could not be placed ({why.rstrip('.')}): "
        + (
            "the position was closed at market."
            if closed
            else f"closing it failed ({outcome}); the guard tries again next pass."
        ),
        symbol=position.symbol,
        repeat_seconds=ctx.rules.alert_repeat_seconds,
    )
    if closed:
        ctx.report.closed.append(f"{position.symbol.name} (unprotectable: {why})"[:200])
        ProtectionState.objects.filter(pk=state.pk).update(gap_since=None, attempts=0)
    else:
        ctx.report.failed.append(f"{label}: close failed: {outcome}")
    return CLOSED_INSTEAD


def _close_whatever_is_held(ctx: _Pass, position: Position, kind: str):
    """Close what the exchange holds: through the record when it is OPEN and its symbol free,
    else (OPENING, CLOSING, symbol locked) by flattening the symbol, without its lock."""
    reason = Position.CloseReason.STOP_LOSS if kind == SL else Position.CloseReason.RISK
    if position.status == Position.Status.CLOSING:
        _transition(
            position,
            old=Position.Status.CLOSING,
            new=Position.Status.OPEN,
            message="still on the exchange and unprotectable: closing it again",
        )
    if (
        position.status == Position.Status.OPEN
        and position.symbol_id not in ctx.book.busy_symbol_ids
    ):
        return order_path.position_close(
            position=position, reason=reason, forced_event=True, gateway=ctx.gateway, actor="guard"
        )
    # The symbol's lock is held (a cycle, or a worker that died holding it): the guard does not
    # wait for it with a naked position; it closes what the exchange holds, reduce-only, and
    # the next pass records the close from the fills.
    try:
        order_path.exchange_position_flatten(
            symbol=position.symbol, gateway=ctx.gateway, actor="guard"
        )
    except ArenaError as exc:
        return order_path.CloseOutcome(order_path.CloseOutcome.FAILED, str(exc), position=position)
    return order_path.CloseOutcome(order_path.CloseOutcome.CLOSED, "flattened", position=position)


def _gap_closed(ctx: _Pass, position: Position, kind: str) -> None:
    state = _state_for(ctx, position.symbol, kind, position)
    if state is not None and (
        state.gap_since is not None or state.attempts or state.gave_up_at is not None
    ):
        if state.gap_since is not None:
            # Someone else (the order path, an operator) put it back, or our order showed up.
            logger.info("[Guard] %s %s in place again", position.symbol.name, KIND_NAMES[kind])
        state.gap_since = state.gave_up_at = None
        state.attempts = 0
        state.save(update_fields=["gap_since", "gave_up_at", "attempts", "updated_at"])


def _exit_place(
    ctx: _Pass, position: Position, kind: str, price: Decimal, live: ExchangePosition
) -> Order:
    """Place the exit through the order path (its client id derived from the position and the
    number of exits of this kind already seen), then record the price it protects at."""
    generation = sum(1 for o in getattr(position, "exit_orders", ()) if o.purpose == kind)
    order = order_path.exit_order_place(
        position=position,
        kind=kind,
        price=price,
        gateway=ctx.gateway,
        side=live.side,
        generation=generation,
    )
    position.exit_orders = [*getattr(position, "exit_orders", ()), order]
    field_name = "stop_loss_price" if kind == SL else "take_profit_price"
    with transaction.atomic():
        if live.side == position.side:
            Position.objects.filter(pk=position.pk).update(**{field_name: price})
            setattr(position, field_name, price)
        TradeEvent.objects.create(
            symbol=position.symbol,
            position=position,
            kind=TradeEvent.Kind.PROTECTION,
            message=f"{live.side} {KIND_NAMES[kind]} placed by the guard @ {price} "
            f"({order.client_order_id})",
            actor="guard",
        )
    return order


def _exit_on_exchange(ctx: _Pass, live: ExchangePosition, kind: str) -> bool:
    """True when an open order on the exchange closes the position the exchange holds (its
    side, whatever ours says) at a stop or target of this kind."""
    return exit_on_exchange(held=live, orders=ctx.snapshot.orders.get(live.symbol, ()), kind=kind)


def _own_exit_lookup(
    ctx: _Pass, position: Position, kind: str, live: ExchangePosition
) -> tuple[bool, Order | None]:
    """Our stored exits of this kind and side the lists did not show, looked up by client id
    (open-order queries can hide a new conditional order for a while).

    Returns (working, unsent): ``working`` when one of them is on the exchange; ``unsent``, the
    newest one the exchange does not know (stored, being sent, or its answer lost): sending it
    again under its own id cannot make a second order, so the guard does not wait for its
    sender (which may be retrying for twenty seconds, or dead).
    """
    closing_side = "SELL" if live.side == Position.Side.LONG else "BUY"
    unsent: Order | None = None
    for order in getattr(position, "exit_orders", ()):
        if order.purpose != kind or order.side != closing_side:
            continue
        if order.status not in Order.ACTIVE_STATUSES:
            continue
        found = ctx.gateway.fetch_order(
            symbol=position.symbol.name,
            client_order_id=order.client_order_id,
            conditional=order.is_conditional,
        )
        if found is None:
            unsent = order
            continue
        if order.status != found.our_status:
            order_path.order_refresh(order=order, found=found)
        if found.our_status == Order.Status.OPEN:
            return True, None  # working but hidden from the lists
        # Fired, cancelled or expired: the snapshot still shows a position, so it is not
        # protected by this order any more.
    return False, unsent


# --- positions gone, unknown, orphan orders -------------------------------------------------------
def _position_flat(ctx: _Pass, position: Position) -> None:
    """Recorded open, flat in the snapshot. Nothing is said about a record younger than the
    snapshot (its entry may have filled after the position read), and the order path's services
    check the exchange again before they record anything."""
    if position.opened_at >= ctx.snapshot.taken_at:
        return
    if position.symbol_id in ctx.book.busy_symbol_ids:
        # Flat, so nothing is naked: the record waits for the order path (or the lock's expiry)
        # rather than the pass waiting for the lock, which would hold every other position back.
        return
    if position.status == Position.Status.OPENING:
        # Every stuck entry is resolved from the exchange by its client id: filled -> recorded
        # (and protected), never reached it or unfilled -> FAILED and the symbol free again.
        outcome = order_path.position_entry_resolve(
            position=position, gateway=ctx.gateway, actor="guard"
        )
        if outcome.status != order_path.OpenOutcome.REFUSED:
            logger.warning(
                "[Guard] %s %s: entry left opening, resolved from the exchange: %s (%s)",
                position.symbol.name,
                position.side,
                outcome.status,
                outcome.reason,
            )
        return
    # The order path's service reads the fills (exit price, PnL, fees), works out what closed
    # it from which of our orders fired, cancels the position's remaining exits and logs the
    # "[Close] SL @ 99700.0 | PnL -3.30 USDT" line.
    # Flattened by the guard itself (unprotectable, symbol locked): RISK, not a liquidation.
    flattened = any(
        state.position_id == position.id and state.gave_up_at is not None
        for state in (ctx.book.states.get((position.symbol_id, kind)) for kind in (SL, TP))
        if state is not None
    )
    outcome = order_path.position_record_exchange_close(
        position=position,
        gateway=ctx.gateway,
        actor="guard",
        reason=Position.CloseReason.RISK if flattened else None,
    )
    if outcome.status == order_path.CloseOutcome.CLOSED:
        closed = outcome.position or position
        ctx.report.closed.append(
            f"{position.symbol.name} {closed.close_reason} @ {closed.exit_price} "
            f"PnL {closed.realized_pnl}"
        )
        return
    if outcome.status == order_path.CloseOutcome.REFUSED:
        # Changed since the snapshot (recorded by someone else, or on the exchange again), or
        # the order path holds the symbol: nothing is wrong yet; looked at again next pass.
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
            f"{description}"
            + (" - closing it (rule)." if policy == "close" else " - protecting it (rule)."),
            symbol=symbol,
            repeat_seconds=ctx.rules.alert_repeat_seconds,
        )
        if policy != MonitoringSettings.UnknownPositionPolicy.CLOSE:
            # Protected in this pass, not the next: it has been naked since it was opened.
            _position_live(ctx, position, exchange_position)
            continue
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
        position = position_create(
            status=Position.Status.OPEN,
            reason="adopted: found on the exchange with no record here",
            actor="guard",
            symbol=symbol,
            side=exchange_position.side,
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
            orders_transition(
                Order.objects.filter(
                    client_order_id=order.client_order_id, status__in=Order.ACTIVE_STATUSES
                ),
                Order.Status.CANCELED,
                reason="left without a position",
                actor="guard",
            )


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
    equity = _equity_if_needed(ctx, positions)
    if equity is None:
        return
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


def _equity_if_needed(ctx: _Pass, positions: list[Position]) -> Decimal | None:
    """The account's equity when the post-trade check needs it this pass, else None (no read).

    The check compares each position's margin with ``min(equity x risk %, max risk)``: it can
    only change its answer when the rules change, when the wallet moves (a close or an adoption
    this pass; funding and transfers, caught by the read every ``BALANCE_EVERY``) or when
    unrealized PnL moves equity (the same read). A position over the limit whatever the equity
    is checked at once. One read per pass at most, never one per position.
    """
    lease = ctx.leases.get(BALANCE_LEASE_NAME)
    last_read = lease.expires_at - BALANCE_EVERY if lease and lease.expires_at else None
    profiles = [_profile_for(ctx, p.symbol) for p in positions]
    needed = (
        last_read is None
        or last_read <= ctx.now - BALANCE_EVERY
        or bool(ctx.report.closed or ctx.report.adopted)
        or any(profile.updated_at > last_read for profile in profiles if profile is not None)
        or any(
            position_excess(position=position, profile=profile, equity=ANY_EQUITY).over_limit
            for position, profile in zip(positions, profiles, strict=True)
            if profile is not None and position.entry_price and position.quantity
        )
    )
    if not needed:
        return None
    equity = ctx.gateway.fetch_balance().equity
    # A memory, not a claim: two guards reading the balance at once cost a read, nothing more.
    Lease.objects.update_or_create(
        name=BALANCE_LEASE_NAME,
        defaults={"owner": "guard", "expires_at": timezone.now() + BALANCE_EVERY},
    )
    return equity


# --- helpers --------------------------------------------------------------------------------------
class NoExitPrice(ValueError):
    """Neither a recorded price nor the rules give an exit price (no entry, no profile)."""


def _exit_price(
    *,
    position: Position,
    kind: str,
    profile: RiskProfile | None,
    live: ExchangePosition,
    recompute: bool = False,
) -> Decimal:
    """The recorded price, put on the current tick toward the entry; else (none recorded, the
    exchange holds the other side, or ``recompute``) from the rules and the entry price."""
    filters = position.symbol.filters
    recorded = position.stop_loss_price if kind == SL else position.take_profit_price
    if recorded and live.side == position.side and not (recompute and profile is not None):
        toward_entry_is_up = (kind == SL) == (position.side == Position.Side.LONG)
        rounder = round_price_up if toward_entry_is_up else round_price_down
        return rounder(recorded, filters)
    same_side = live.side == position.side
    entry_price = (position.entry_price if same_side else None) or live.entry_price or None
    if entry_price is None or profile is None:
        raise NoExitPrice(
            f"no recorded {KIND_NAMES[kind]} price and no "
            + ("entry price" if profile else "risk profile")
            + " to compute it from"
        )
    take_profit, stop_loss = exit_prices(
        side=live.side,
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
