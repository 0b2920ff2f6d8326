"""The order path: how a signal becomes a protected position, and how a position is closed.

Read top to bottom: ``position_open`` checks the rules, applies leverage and margin type, sizes
the entry, stores each order as an intent before sending it, sends the market entry, then places
the stop-loss and take-profit concurrently; a position that cannot get its stop is closed at once.
``position_close`` closes all or part of a position with a reduce-only market order and removes
the protection only once the exchange says the position is flat.

Every service returns an explicit outcome instead of raising for the expected cases (refused,
skipped, rejected), so no caller can mistake "sent" for "done".
"""

from __future__ import annotations

import csv
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import ArenaError, OperatorActionRequired, OrderRejected
from core.formatting import money_text, price_text, quantity_text
from core.notify import alert_raise
from exchange.gateway import (
    CLOSE_POSITION_EXIT_EXISTS,
    WOULD_TRIGGER,
    ExchangeGateway,
    ExchangeOrder,
)
from exchange.retry import exchange_may_have_acted
from exchange.rounding import ExitTooClose, check_quantity, exit_prices
from risk.checks import (
    check_daily_loss,
    check_free_margin,
    check_kill_switch,
    check_max_open_positions,
    check_one_position_per_symbol,
    check_pnl_known,
)
from risk.revalidate import check_active_rules
from risk.selectors import NoActiveRiskProfile, risk_profile_for_symbol
from risk.services import rule_save
from risk.sizing import position_margin, position_size
from trading import fills
from trading.entry_state import HeldSymbolState, balance_read, entry_inputs_gather
from trading.gateway import exchange_gateway
from trading.locks import (
    DEFAULT_TTL_SECONDS,
    SymbolBusy,
    db_write_lock,
    lease_is_ours,
    symbol_lock,
)
from trading.models import Order, Position, Symbol, TradeEvent, TradingSwitch
from trading.selectors import (
    daily_pnl,
    position_exit_orders,
    position_open_for_symbol,
    positions_open_count,
)
from trading.switch import trading_switch_set
from trading.transitions import order_transition, position_transition

logger = logging.getLogger(__name__)

ENTRY_SIDE = {"LONG": "BUY", "SHORT": "SELL"}
EXIT_SIDE = {"LONG": "SELL", "SHORT": "BUY"}
# A close waits this long for a trade cycle holding the symbol, instead of being refused.
CLOSE_LOCK_WAIT_SECONDS = 15.0
CLIENT_ID_PREFIX = "arena-"
CLOSE_RESTORED = "CLOSING -> OPEN: "


# --------------------------------------------------------------------------- outcomes
def _plain(value: Decimal | None) -> str:
    """A stored decimal as a trader writes it: 0.011, not 0.0110000000."""
    return "-" if value is None else f"{value.normalize():f}"


@dataclass(frozen=True)
class OpenOutcome:
    """What ``position_open`` did: opened, refused (nothing sent) or failed (reason says)."""

    OPENED = "opened"
    REFUSED = "refused"
    FAILED = "failed"

    status: str
    reason: str = ""
    position: Position | None = None

    @property
    def ok(self) -> bool:
        return self.status == self.OPENED

    def __str__(self) -> str:
        if self.ok and self.position is not None:
            p = self.position
            return f"opened {p.side} {_plain(p.quantity)} {p.symbol} @ {_plain(p.entry_price)}"
        return f"{self.status}: {self.reason}"


@dataclass(frozen=True)
class CloseOutcome:
    """What ``position_close`` did. Only CLOSED means the exchange position is gone."""

    CLOSED = "closed"
    PARTIAL = "partially closed"
    SKIPPED = "skipped"
    REFUSED = "refused"
    REJECTED = "rejected"
    FAILED = "failed"

    status: str
    reason: str = ""
    code: int | None = None
    quantity: Decimal = Decimal(0)
    pnl: Decimal | None = None
    position: Position | None = None

    @property
    def ok(self) -> bool:
        return self.status in (self.CLOSED, self.PARTIAL)

    def __str__(self) -> str:
        text = self.status
        if self.quantity:
            text += f" {self.quantity}"
        if self.code is not None:
            text += f" (code {self.code})"
        return f"{text}: {self.reason}" if self.reason else text


# --------------------------------------------------------------------------- opening
def position_open(
    *,
    symbol: Symbol,
    side: str,
    reason: str,
    gateway: ExchangeGateway | None = None,
    actor: str = "bot",
    held: HeldSymbolState | None = None,
) -> OpenOutcome:
    """Open a protected ``side`` (LONG/SHORT) position in ``symbol`` under the symbol's lock.

    ``held``: the symbol's state as read while the caller decided (``trading.entry_state``);
    used while fresh, read again otherwise.
    """
    if side not in ENTRY_SIDE:
        raise ValueError(f"side must be LONG or SHORT, got {side!r}")
    gateway = gateway or exchange_gateway()
    try:
        with symbol_lock(symbol.pk, DEFAULT_TTL_SECONDS):
            return _open_locked(
                symbol=symbol, side=side, reason=reason, gateway=gateway, actor=actor, held=held
            )
    except SymbolBusy as e:
        return _refuse(symbol=symbol, side=side, reason=f"symbol busy: {e}", actor=actor)


def _open_locked(
    *,
    symbol: Symbol,
    side: str,
    reason: str,
    gateway: ExchangeGateway,
    actor: str,
    held: HeldSymbolState | None,
) -> OpenOutcome:
    try:
        profile = risk_profile_for_symbol(symbol=symbol)
    except NoActiveRiskProfile as e:
        return _refuse(symbol=symbol, side=side, reason=str(e), actor=actor)

    # 1. The rules that need only the database, before any request.
    denial = _check_database_rules(symbol=symbol, profile=profile, actor=actor)
    if denial:
        return _refuse(symbol=symbol, side=side, reason=denial, actor=actor)

    # 2. The exchange: account mode, an unrecorded position, price, leverage and margin type,
    #    equity. Held where fresh (the common case sends nothing here), the rest read at once.
    try:
        inputs = entry_inputs_gather(symbol=symbol, gateway=gateway, held=held)
    except OperatorActionRequired as e:
        return _refuse(symbol=symbol, side=side, reason=str(e), actor=actor)
    except ArenaError as e:
        return _refuse(symbol=symbol, side=side, reason=f"exchange unreadable: {e}", actor=actor)
    if inputs.read:
        logger.info("[EntryRead] %s: %s", symbol.name, "; ".join(inputs.read))
    balance, price, state = inputs.balance, inputs.state.mark_price, inputs.state
    denial = check_one_position_per_symbol(
        symbol=symbol.name, open_in_db=False, open_on_exchange=state.position is not None
    )
    if denial:
        return _refuse(symbol=symbol, side=side, reason=denial, actor=actor)

    # 3. Size with the one sizing function.
    sizing = position_size(
        equity=balance.equity,
        price=price,
        leverage=profile.leverage,
        risk_pct=profile.risk_pct,
        max_risk_usd=profile.max_risk_usd,
        filters=symbol.filters,
        slippage_pct=profile.entry_slippage_pct,
    )
    if not sizing.ok:
        return _refuse(symbol=symbol, side=side, reason=sizing.refusal or "", actor=actor)
    margin = position_margin(
        quantity=sizing.quantity, entry_price=sizing.fill_price, leverage=profile.leverage
    )
    denial = check_free_margin(available=balance.available, margin=margin)
    if denial:
        return _refuse(symbol=symbol, side=side, reason=denial, actor=actor)
    try:
        # Refuse now rather than after the fill when the rules put an exit under one tick.
        exit_prices(
            side=side,
            entry_price=price,
            take_profit_pct=profile.take_profit_pct,
            stop_loss_pct=profile.stop_loss_pct,
            filters=symbol.filters,
        )
    except ExitTooClose as e:
        return _refuse(symbol=symbol, side=side, reason=str(e), actor=actor)

    # 4. Leverage and margin type from the rules, written only where the exchange (as the
    #    symbol's state read them) differs: a rule changed, or a setting changed by hand.
    try:
        gateway.ensure_symbol_settings(
            symbol=symbol.name,
            leverage=profile.leverage,
            margin_type=profile.margin_type,
            current=(state.leverage, state.margin_type),
        )
    except ArenaError as e:
        return _refuse(
            symbol=symbol, side=side, reason=f"could not set leverage/margin: {e}", actor=actor
        )

    # 5. The position and its entry as committed intents, admitted under the kill switch's row
    #    lock (switch, lease, limits checked again right before the send), then the entry.
    try:
        admitted = _entry_admit(
            symbol=symbol, side=side, quantity=sizing.quantity, profile=profile, reason=reason
        )
    except IntegrityError:
        return _refuse(
            symbol=symbol, side=side, reason=f"a position in {symbol} is already open", actor=actor
        )
    if isinstance(admitted, str):
        return _refuse(symbol=symbol, side=side, reason=admitted, actor=actor)
    position, entry = admitted
    filled = _entry_send(position=position, entry=entry, gateway=gateway, actor=actor)
    if isinstance(filled, OpenOutcome):
        return filled

    # 6. Protection, priced from the actual fill.
    taken = _entry_symbol_taken_over(position=position)
    if taken is not None:
        return taken
    _protect(position=position, gateway=gateway, profile=profile, actor=actor)
    unprotected = _entry_unprotected(position=position)
    if unprotected is not None:
        return unprotected
    logger.info(
        "[Entry] %s %s qty %s @ %s | TP %s SL %s",
        position.side,
        symbol.name,
        quantity_text(position.quantity, symbol),
        price_text(position.entry_price, symbol),
        price_text(position.take_profit_price, symbol),
        price_text(position.stop_loss_price, symbol),
    )

    # 7. The post-trade check, with the same sizing arithmetic. Imported here: it closes through
    # this module's position_close, so it imports this module.
    from trading.post_trade import post_trade_check

    try:
        # Read after the exits, held for the next entry: the book does not move until then.
        post_trade_check(
            position=position, gateway=gateway, equity=balance_read(gateway=gateway).equity
        )
    except ArenaError as e:
        logger.warning("post-trade check of %s could not run: %s", symbol.name, e)
    position.refresh_from_db()
    return OpenOutcome(OpenOutcome.OPENED, reason, position)


def _check_database_rules(*, symbol: Symbol, profile, actor: str) -> str | None:
    if denial := check_active_rules(symbol=symbol, profile=profile):
        return denial
    switch = TradingSwitch.load()
    denial = check_kill_switch(enabled=switch.enabled, reason=switch.reason)
    if denial:
        return denial
    denial = check_one_position_per_symbol(
        symbol=symbol.name,
        open_in_db=position_open_for_symbol(symbol=symbol) is not None,
        open_on_exchange=False,
    )
    if denial:
        return denial
    denial = check_max_open_positions(
        open_positions=positions_open_count(), max_open_positions=profile.max_open_positions
    )
    if denial:
        return denial
    today = daily_pnl()
    denial = check_daily_loss(realized_today=today.realized, limit=profile.daily_loss_limit_usd)
    if denial:
        trading_switch_set(enabled=False, reason=denial, actor="risk")
        return denial
    return check_pnl_known(unknown=today.unknown, limit=profile.daily_loss_limit_usd)


def _entry_admit(
    *, symbol: Symbol, side: str, quantity: Decimal, profile, reason: str
) -> tuple[Position, Order] | str:
    """Check the kill switch, the symbol's lease and the position limits once more and store
    the entry as SENT, all under the kill switch's row lock; a denial reason when refused.

    The row lock is what halting takes too (``trading_switch_set``), and on SQLite every write
    transaction is serialised: an entry admitted before a halt has its SENT row committed by the
    time the halt returns (the emergency close waits for those), and none is admitted after.
    The same lock makes ``max_open_positions`` hold across workers: two cycles at the same
    instant count and create their OPENING rows one after the other.
    """
    with db_write_lock, transaction.atomic():
        TradingSwitch.load()
        switch = TradingSwitch.objects.select_for_update().get(id=1)
        denial = check_kill_switch(enabled=switch.enabled, reason=switch.reason)
        if denial:
            return denial
        if not lease_is_ours(symbol.pk):
            return f"the lease on {symbol} was taken over (emergency close): nothing sent"
        denial = check_one_position_per_symbol(
            symbol=symbol.name,
            open_in_db=position_open_for_symbol(symbol=symbol) is not None,
            open_on_exchange=False,
        ) or check_max_open_positions(
            open_positions=positions_open_count(), max_open_positions=profile.max_open_positions
        )
        if denial:
            return denial
        position, entry = _entry_intent_create(
            symbol=symbol, side=side, quantity=quantity, profile=profile, reason=reason
        )
        _order_mark_sent(entry)
    return position, entry


@transaction.atomic
def _entry_intent_create(
    *, symbol: Symbol, side: str, quantity: Decimal, profile, reason: str
) -> tuple[Position, Order]:
    position = Position.objects.create(
        symbol=symbol,
        side=side,
        status=Position.Status.OPENING,
        leverage=profile.leverage,
        margin_type=profile.margin_type,
        opened_reason=reason[:255],
    )
    entry = _order_intent_create(
        position=position,
        purpose=Order.Purpose.ENTRY,
        side=ENTRY_SIDE[side],
        order_type="MARKET",
        quantity=quantity,
    )
    return position, entry


def _entry_send(
    *, position: Position, entry: Order, gateway: ExchangeGateway, actor: str
) -> ExchangeOrder | OpenOutcome:
    """Send the entry; on success the position is OPEN with the fill's quantity and price."""
    symbol = position.symbol
    if entry.status != Order.Status.SENT:
        _order_mark_sent(entry)
    try:
        answer = gateway.create_market_order(
            symbol=symbol.name,
            side=entry.side,
            quantity=entry.quantity,
            client_order_id=entry.client_order_id,
            reduce_only=False,
        )
    except OrderRejected as e:
        _order_mark_failed(entry, Order.Status.REJECTED, e)
        _position_fail(position, f"entry rejected ({e.code}): {e}", actor=actor)
        return OpenOutcome(OpenOutcome.FAILED, f"entry rejected ({e.code}): {e}", position)
    except ArenaError as e:
        if not exchange_may_have_acted(e):
            # Refused before the exchange acted (rate limit, clock skew, our weight budget):
            # nothing was opened, and the symbol is free for the next cycle.
            _order_mark_failed(entry, Order.Status.REJECTED, e)
            message = f"entry not executed, refused before the exchange acted: {e}"
            _position_fail(position, message, actor=actor)
            return OpenOutcome(OpenOutcome.FAILED, message, position)
        _order_mark_failed(entry, Order.Status.UNKNOWN, e)
        return _entry_settle(position=position, entry=entry, gateway=gateway, actor=actor)
    return _entry_settle(
        position=position, entry=entry, gateway=gateway, actor=actor, answer=answer
    )


def _entry_settle(
    *,
    position: Position,
    entry: Order,
    gateway: ExchangeGateway,
    actor: str,
    answer: ExchangeOrder | None = None,
) -> ExchangeOrder | OpenOutcome:
    """Bring an entry to a final state from the exchange and record it on the position.

    Without an answer (lost) or with one that shows no fill yet, the entry is looked up by its
    client id. Not on the exchange -> FAILED (the symbol is free). Still open on the exchange
    (NEW, PARTIALLY_FILLED) -> cancelled first, so what is recorded cannot grow afterwards, then
    read again. Filled, wholly or partly -> OPEN with the filled quantity. When the exchange
    cannot be read, the position stays OPENING and the outcome says so: the next cycle of the
    symbol, or the guard, resolves it (``position_entry_resolve``).
    """
    symbol = position.symbol
    try:
        if answer is None or answer.filled_quantity <= 0:
            answer = _entry_lookup(entry=entry, gateway=gateway)
            if answer is None:
                _order_mark_failed(entry, Order.Status.EXPIRED, ArenaError("unknown to exchange"))
                message = "entry never reached the exchange (not found by its client id)"
                _position_fail(position, message, actor=actor)
                return OpenOutcome(OpenOutcome.FAILED, message, position)
        if answer.our_status == Order.Status.OPEN:
            gateway.cancel_order(
                symbol=symbol.name, client_order_id=entry.client_order_id, conditional=False
            )
            answer = _entry_lookup(entry=entry, gateway=gateway) or answer
    except ArenaError as e:
        message = (
            f"entry of {position}: outcome unknown ({e}); position left OPENING, resolved from "
            "the exchange by its client id at the next cycle or guard pass"
        )
        _alert(key=f"order_path.entry_unknown.{symbol.name}", message=message, symbol=symbol)
        _event(symbol=symbol, position=position, kind=TradeEvent.Kind.FAILED, message=message)
        return OpenOutcome(OpenOutcome.FAILED, message, position)
    return _entry_record_fill(position=position, entry=entry, answer=answer, actor=actor)


def _entry_lookup(*, entry: Order, gateway: ExchangeGateway) -> ExchangeOrder | None:
    return gateway.fetch_order(
        symbol=entry.symbol.name, client_order_id=entry.client_order_id, conditional=False
    )


def _entry_symbol_taken_over(*, position: Position) -> OpenOutcome | None:
    """After the fill: when an emergency close took the symbol over meanwhile, send nothing more
    (it closes the position; the guard protects it should that fail)."""
    if lease_is_ours(position.symbol_id):
        return None
    message = (
        f"entry of {position} filled after the symbol was taken over (emergency close): "
        "exits not placed, the position is left to the close"
    )
    _alert(key=f"order_path.entry_taken_over.{position.symbol.name}", message=message)
    return OpenOutcome(OpenOutcome.FAILED, message, position)


def _entry_unprotected(*, position: Position) -> OpenOutcome | None:
    """None when the position is OPEN with its stop-loss placed; else what really happened."""
    position.refresh_from_db()
    stop_placed = position.orders.filter(
        purpose=Order.Purpose.STOP_LOSS, status=Order.Status.OPEN
    ).exists()
    if position.status == Position.Status.OPEN and stop_placed:
        return None
    # Why the close did not happen, as its own path recorded it.
    restored = position.events.filter(message__startswith=CLOSE_RESTORED).order_by("-id").first()
    close = position.orders.filter(purpose=Order.Purpose.CLOSE).order_by("-id").first()
    why = close.error_message if close and close.error_message else ""
    if restored is not None:
        why = restored.message.removeprefix(CLOSE_RESTORED)
    if position.status == Position.Status.CLOSED:
        reason = "no stop-loss could be placed: closed at market"
    elif position.status == Position.Status.CLOSING:
        reason = (
            f"no stop-loss could be placed and the close's outcome is unknown ({why}): "
            "position CLOSING until the exchange is read"
        )
    elif position.status == Position.Status.OPEN:
        reason = (
            "no stop-loss could be placed and the close did not execute"
            + (f" ({why})" if why else "")
            + ": position OPEN on the exchange without a stop, for the guard to protect"
        )
    else:
        reason = f"no stop-loss could be placed; position {position.status}"
    return OpenOutcome(OpenOutcome.FAILED, reason, position)


def _entry_record_fill(
    *, position: Position, entry: Order, answer: ExchangeOrder, actor: str
) -> ExchangeOrder | OpenOutcome:
    """Record the exchange's answer to the entry: OPEN with the fill, or FAILED unfilled."""
    _order_apply(entry, answer)
    if answer.filled_quantity <= 0 or answer.average_price is None:
        message = f"entry not filled (status {answer.status})"
        _position_fail(position, message, actor=actor)
        return OpenOutcome(OpenOutcome.FAILED, message, position)
    with transaction.atomic():
        position_transition(
            position,
            Position.Status.OPEN,
            reason="entry filled",
            actor=actor,
            fields={"quantity": answer.filled_quantity, "entry_price": answer.average_price},
        )
        _event(
            symbol=position.symbol,
            position=position,
            kind=TradeEvent.Kind.OPENED,
            message=f"{position.side} {answer.filled_quantity} @ {answer.average_price}: "
            f"{position.opened_reason}",
            actor=actor,
        )
    return answer


def position_entry_resolve(
    *, position: Position, gateway: ExchangeGateway | None = None, actor: str = "guard"
) -> OpenOutcome:
    """Finish an entry whose answer was lost (a position left OPENING) from the exchange.

    The entry is looked up by its client order id: filled (wholly or partly) -> the fill is
    recorded and TP/SL placed as ``position_open`` would; still open -> cancelled, then what
    filled is recorded; unknown to the exchange, or nothing filled -> FAILED, the symbol free.
    When the exchange cannot be read it stays OPENING (outcome REFUSED) for the next attempt.
    For trade cycles (before they decide), the guard and restarts.
    """
    gateway = gateway or exchange_gateway()
    try:
        with symbol_lock(position.symbol_id, DEFAULT_TTL_SECONDS):
            position.refresh_from_db()
            if position.status != Position.Status.OPENING:
                return OpenOutcome(OpenOutcome.REFUSED, f"position is {position.status}", position)
            entry = position.orders.filter(purpose=Order.Purpose.ENTRY).order_by("id").first()
            if entry is None:
                _position_fail(position, "no entry order recorded", actor=actor)
                return OpenOutcome(OpenOutcome.FAILED, "no entry order recorded", position)
            try:
                answer = _entry_lookup(entry=entry, gateway=gateway)
            except ArenaError as e:
                return OpenOutcome(OpenOutcome.REFUSED, f"entry lookup failed: {e}", position)
            if answer is None:
                _order_mark_failed(entry, Order.Status.EXPIRED, ArenaError("unknown to exchange"))
                message = "the entry never reached the exchange (not found by its client id)"
                _position_fail(position, message, actor=actor)
                return OpenOutcome(OpenOutcome.FAILED, message, position)
            filled = _entry_settle(
                position=position, entry=entry, gateway=gateway, actor=actor, answer=answer
            )
            if isinstance(filled, OpenOutcome):
                position.refresh_from_db()
                if position.status == Position.Status.OPENING:
                    return OpenOutcome(OpenOutcome.REFUSED, filled.reason, position)
                return filled
            profile = risk_profile_for_symbol(symbol=position.symbol)
            _protect(position=position, gateway=gateway, profile=profile, actor=actor)
            unprotected = _entry_unprotected(position=position)
            if unprotected is not None:
                return unprotected
            return OpenOutcome(OpenOutcome.OPENED, "entry found on the exchange", position)
    except SymbolBusy as e:
        return OpenOutcome(OpenOutcome.REFUSED, f"symbol busy: {e}", position)


def _protect(*, position: Position, gateway: ExchangeGateway, profile, actor: str) -> None:
    """Place stop-loss and take-profit concurrently; without a stop, close at once."""
    symbol = position.symbol
    try:
        take_profit, stop_loss = exit_prices(
            side=position.side,
            entry_price=position.entry_price,
            take_profit_pct=profile.take_profit_pct,
            stop_loss_pct=profile.stop_loss_pct,
            filters=symbol.filters,
        )
    except ExitTooClose as e:
        _no_stop(position=position, gateway=gateway, why=str(e), actor=actor)
        return
    with transaction.atomic():
        position.take_profit_price, position.stop_loss_price = take_profit, stop_loss
        position.save(update_fields=["take_profit_price", "stop_loss_price"])
    # The entry's own exits are generation 0, whoever sends them: one already stored under its
    # deterministic id (the guard got there first, seeing the position on the exchange) is not
    # sent twice; that one stands.
    sl = _exit_intent_claim(
        position=position, kind=Order.Purpose.STOP_LOSS, price=stop_loss, generation=0
    )
    tp = _exit_intent_claim(
        position=position, kind=Order.Purpose.TAKE_PROFIT, price=take_profit, generation=0
    )
    results = _exits_send_concurrently(
        orders=[o for o in (sl, tp) if o is not None], gateway=gateway
    )
    tp_result = results.get(tp.pk) if tp is not None else None
    sl_result = results.get(sl.pk) if sl is not None else None
    if isinstance(tp_result, BaseException):
        message = f"take-profit of {position} not placed: {tp_result}; the guard re-attaches it"
        _alert(key=f"order_path.tp_missing.{symbol.name}", message=message, symbol=symbol)
    if isinstance(sl_result, BaseException):
        # A stop refused because the price is already through it is a stop-loss exit, executed
        # at market: recorded as SL, as the guard records a crossed stop.
        crossed = isinstance(sl_result, OrderRejected) and sl_result.code == WOULD_TRIGGER
        _no_stop(
            position=position,
            gateway=gateway,
            why=str(sl_result),
            actor=actor,
            reason=Position.CloseReason.STOP_LOSS if crossed else Position.CloseReason.EMERGENCY,
        )


class ExitInFlight(Exception):
    """This exit (same position, kind and generation) is already stored by another worker: it
    is being sent or was sent; it is looked up, never sent a second time."""


def exit_client_order_id(*, position: Position, kind: str, generation: int, side: str) -> str:
    """The client order id of a position's ``generation``-th stop-loss or take-profit.

    Derived from the position, not from a new row, so the order path and the guard placing the
    same exit at the same moment compute the same id: one of them stores it (the id is unique)
    and the exchange refuses a second send of it (-4116), which the gateway resolves by lookup.
    The side is part of it because a position flipped by hand needs exits of the other side.
    The opening time keeps ids unique across a rebuilt database whose primary keys restart.
    """
    stamp = _base36(int(position.opened_at.timestamp()))
    return f"{CLIENT_ID_PREFIX}{position.pk}-{kind.lower()}{side[0].lower()}{generation}-{stamp}"[
        :36
    ]


def _exit_intent_claim(
    *,
    position: Position,
    kind: str,
    price: Decimal,
    side: str | None = None,
    generation: int | None = None,
) -> Order | None:
    """The exit's intent, stored under its deterministic id; None when already stored."""
    try:
        return _exit_intent_create(
            position=position, kind=kind, price=price, side=side, generation=generation
        )
    except ExitInFlight:
        return None


def _exit_intent_create(
    *,
    position: Position,
    kind: str,
    price: Decimal,
    side: str | None = None,
    generation: int | None = None,
) -> Order:
    """Store an exit intent closing a ``side`` (default: the position's side) position.

    ``generation`` is how many exits of this kind the caller saw for the position; None counts
    them now. Raises ``ExitInFlight`` when that generation is already stored.
    """
    side = side or position.side
    if generation is None:
        generation = Order.objects.filter(position=position, purpose=kind).count()
    client_order_id = exit_client_order_id(
        position=position, kind=kind, generation=generation, side=EXIT_SIDE[side]
    )
    try:
        with db_write_lock, transaction.atomic():
            return Order.objects.create(
                symbol=position.symbol,
                position=position,
                purpose=kind,
                side=EXIT_SIDE[side],
                order_type="STOP_MARKET"
                if kind == Order.Purpose.STOP_LOSS
                else "TAKE_PROFIT_MARKET",
                stop_price=price,
                close_position=True,
                is_conditional=True,
                client_order_id=client_order_id,
            )
    except IntegrityError as e:
        raise ExitInFlight(f"{client_order_id} is already stored") from e


def _exits_send_concurrently(
    *, orders: list[Order], gateway: ExchangeGateway
) -> dict[int, ExchangeOrder | BaseException]:
    """Send conditional orders in parallel threads, one gateway (ccxt client) per thread."""
    results: dict[int, ExchangeOrder | BaseException] = {}
    for order in orders:
        _order_mark_sent(order)
    threads = [
        threading.Thread(
            target=_exit_send_in_thread,
            kwargs={"order": order, "gateway": twin, "results": results},
            name=f"exit-{order.client_order_id}",
        )
        for order, twin in zip(orders, gateway.twins(len(orders)), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _exit_send_in_thread(
    *, order: Order, gateway: ExchangeGateway, results: dict[int, ExchangeOrder | BaseException]
) -> None:
    # The thread only sends and writes its own order row (under the process's write lock); it
    # reads nothing, so it never waits on the caller's connection.
    try:
        answer = gateway.create_exit_order(
            symbol=order.symbol.name,
            side=order.side,
            kind=order.purpose,
            stop_price=order.stop_price,
            client_order_id=order.client_order_id,
        )
        _order_apply(order, answer)
        results[order.pk] = answer
    except ArenaError as e:
        status = Order.Status.REJECTED if isinstance(e, OrderRejected) else Order.Status.UNKNOWN
        _order_mark_failed(order, status, e)
        results[order.pk] = e
    except Exception as e:  # reported to the caller, which decides
        results[order.pk] = e
    finally:
        connection.close()


def _no_stop(
    *,
    position: Position,
    gateway: ExchangeGateway,
    why: str,
    actor: str,
    reason: str = Position.CloseReason.EMERGENCY,
) -> None:
    """A position without a stop is never left open: close it now (recorded as ``reason``)
    and raise an alert."""
    symbol = position.symbol
    message = f"stop-loss of {position} could not be placed ({why}): closing it at market"
    logger.error("[NoStop] %s", message)
    _alert(key=f"order_path.no_stop.{symbol.name}", message=message, symbol=symbol)
    outcome = position_close(
        position=position,
        reason=reason,
        forced_event=True,
        gateway=gateway,
        actor=actor,
    )
    if outcome.status != CloseOutcome.CLOSED:
        _alert(
            key=f"order_path.no_stop_close_failed.{symbol.name}",
            message=f"{position} has NO STOP and could not be closed: {outcome}",
            symbol=symbol,
        )


def _refuse(*, symbol: Symbol, side: str, reason: str, actor: str) -> OpenOutcome:
    logger.info("[Refused] %s %s: %s", side, symbol.name, reason)
    _event(symbol=symbol, position=None, kind=TradeEvent.Kind.REFUSED, message=reason, actor=actor)
    return OpenOutcome(OpenOutcome.REFUSED, reason)


def _position_fail(position: Position, message: str, *, actor: str) -> None:
    with transaction.atomic():
        position_transition(
            position,
            Position.Status.FAILED,
            reason=message,
            actor=actor,
            fields={"closed_at": timezone.now()},
        )
        _event(
            symbol=position.symbol,
            position=position,
            kind=TradeEvent.Kind.FAILED,
            message=message,
            actor=actor,
        )
    logger.warning("[EntryFailed] %s %s: %s", position.side, position.symbol.name, message)


# --------------------------------------------------------------------------- closing
def position_close(
    *,
    position: Position,
    quantity: Decimal | None = None,
    reason: str,
    forced_event: bool = False,
    gateway: ExchangeGateway | None = None,
    actor: str = "bot",
) -> CloseOutcome:
    """Close ``position`` (all of it, or ``quantity``) with a reduce-only market order.

    A partial quantity is rounded down to the step; below minQty it is skipped with one recorded
    reason and nothing is sent. The minimum holding period applies unless ``forced_event`` (TP,
    SL, emergency, risk). TP/SL are removed only after the exchange reports the position flat.
    """
    symbol = position.symbol
    try:
        with symbol_lock(symbol.pk, DEFAULT_TTL_SECONDS, wait_seconds=CLOSE_LOCK_WAIT_SECONDS):
            position.refresh_from_db()
            return _close_locked(
                position=position,
                quantity=quantity,
                reason=reason,
                forced_event=forced_event,
                gateway=gateway,
                actor=actor,
            )
    except SymbolBusy as e:
        return CloseOutcome(CloseOutcome.REFUSED, f"symbol busy: {e}", position=position)


def _close_locked(
    *,
    position: Position,
    quantity: Decimal | None,
    reason: str,
    forced_event: bool,
    gateway: ExchangeGateway | None,
    actor: str,
) -> CloseOutcome:
    symbol = position.symbol
    if position.status != Position.Status.OPEN or position.quantity <= 0:
        return _close_refused(position, f"position is {position.status}, not OPEN", actor)
    if not lease_is_ours(symbol.pk):
        return _close_refused(
            position, "the symbol's lease was taken over (emergency close): nothing sent", actor
        )
    if not forced_event:
        held = timezone.now() - position.opened_at
        minimum = timedelta(seconds=risk_profile_for_symbol(symbol=symbol).min_holding_seconds)
        if held < minimum:
            return _close_refused(
                position,
                f"held {int(held.total_seconds())}s of the minimum {int(minimum.total_seconds())}s",
                actor,
            )
    full = quantity is None or quantity >= position.quantity
    if not full:
        check = check_quantity(
            quantity, position.entry_price, symbol.filters, market=True, reduce_only=True
        )
        if not check.ok:
            return _close_skip(position, check.refusal or "", actor)
        full = position.quantity - check.quantity < symbol.market_min_qty
        quantity = check.quantity
    gateway = gateway or exchange_gateway()
    if full:
        return _close_full(position=position, reason=reason, gateway=gateway, actor=actor)
    return _close_partial(
        position=position, quantity=quantity, reason=reason, gateway=gateway, actor=actor
    )


def _close_full(
    *, position: Position, reason: str, gateway: ExchangeGateway, actor: str
) -> CloseOutcome:
    symbol = position.symbol
    try:
        live = gateway.fetch_position(symbol=symbol.name)
    except ArenaError as e:
        return CloseOutcome(CloseOutcome.FAILED, f"exchange unreadable: {e}", position=position)
    if live is None:
        # Closed on the exchange already (a TP/SL fired, a liquidation): record that close.
        return _record_exchange_close(position=position, gateway=gateway, reason=None, actor=actor)
    with transaction.atomic():
        position_transition(position, Position.Status.CLOSING, reason=reason, actor=actor)
        order = _order_intent_create(
            position=position,
            purpose=Order.Purpose.CLOSE,
            side=EXIT_SIDE[position.side],
            order_type="MARKET",
            quantity=live.quantity,
            reduce_only=True,
        )
    answer = _close_send(position=position, order=order, gateway=gateway, actor=actor)
    if isinstance(answer, CloseOutcome):
        return answer
    try:
        remaining = gateway.fetch_position(symbol=symbol.name)
    except ArenaError as e:
        # Sent and filled, but flatness is unconfirmed: keep CLOSING for the guard to finish.
        return CloseOutcome(
            CloseOutcome.FAILED, f"close sent, flatness unconfirmed: {e}", position=position
        )
    if remaining is not None:
        position_transition(
            position,
            Position.Status.OPEN,
            reason=f"close filled {answer.filled_quantity}, {remaining.quantity} still open on "
            "the exchange",
            actor=actor,
            fields={"quantity": remaining.quantity},
        )
        return CloseOutcome(
            CloseOutcome.PARTIAL,
            f"{remaining.quantity} still open on the exchange",
            quantity=answer.filled_quantity,
            position=position,
        )
    return _close_finish(
        position=position, reason=reason, gateway=gateway, actor=actor, closed_by_us=True
    )


def _close_partial(
    *, position: Position, quantity: Decimal, reason: str, gateway: ExchangeGateway, actor: str
) -> CloseOutcome:
    symbol = position.symbol
    with transaction.atomic():
        order = _order_intent_create(
            position=position,
            purpose=Order.Purpose.CLOSE,
            side=EXIT_SIDE[position.side],
            order_type="MARKET",
            quantity=quantity,
            reduce_only=True,
        )
    answer = _close_send(position=position, order=order, gateway=gateway, actor=actor)
    if isinstance(answer, CloseOutcome):
        return answer
    pnl = _order_pnl(gateway=gateway, position=position, order_id=answer.exchange_order_id)
    with transaction.atomic():
        position.quantity -= answer.filled_quantity
        position.skip_reason = ""
        position.skip_reason_at = None
        if pnl is not None:
            position.fees += pnl[1]
        position.save(update_fields=["quantity", "skip_reason", "skip_reason_at", "fees"])
        _event(
            symbol=symbol,
            position=position,
            kind=TradeEvent.Kind.PARTIAL,
            message=f"{reason}: closed {answer.filled_quantity} @ {answer.average_price}, "
            f"{position.quantity} left",
            actor=actor,
        )
    net = pnl[0] if pnl is not None else None
    logger.info(
        "[Close] %s %s partial %s @ %s | PnL %s USDT | %s left",
        symbol.name,
        reason,
        _fmt_qty(answer.filled_quantity),
        _fmt(answer.average_price),
        _fmt_money(net),
        _fmt_qty(position.quantity),
    )
    return CloseOutcome(
        CloseOutcome.PARTIAL, reason, quantity=answer.filled_quantity, pnl=net, position=position
    )


def _close_send(
    *, position: Position, order: Order, gateway: ExchangeGateway, actor: str
) -> ExchangeOrder | CloseOutcome:
    _order_mark_sent(order)
    try:
        answer = gateway.create_market_order(
            symbol=position.symbol.name,
            side=order.side,
            quantity=order.quantity,
            client_order_id=order.client_order_id,
            reduce_only=True,
        )
    except OrderRejected as e:
        _order_mark_failed(order, Order.Status.REJECTED, e)
        _close_restore(position, reason=f"close rejected ({e.code})", actor=actor)
        _event(
            symbol=position.symbol,
            position=position,
            kind=TradeEvent.Kind.REJECTED,
            message=f"close rejected ({e.code}): {e}",
            actor=actor,
        )
        return CloseOutcome(CloseOutcome.REJECTED, str(e), code=e.code, position=position)
    except ArenaError as e:
        if not exchange_may_have_acted(e):
            # Refused before the exchange acted (our weight budget, 429/418, clock skew): the
            # close did not happen and the position is as open as before.
            _order_mark_failed(order, Order.Status.REJECTED, e)
            reason = f"close not executed, refused before the exchange acted: {e}"
            _close_restore(position, reason=reason, actor=actor)
            return CloseOutcome(CloseOutcome.FAILED, reason, position=position)
        _order_mark_failed(order, Order.Status.UNKNOWN, e)
        found = _close_lookup(position=position, order=order, gateway=gateway, actor=actor)
        if isinstance(found, CloseOutcome):
            return found
        answer = found
    _order_apply(order, answer)
    if answer.filled_quantity <= 0:
        _close_restore(position, reason=f"close not filled (status {answer.status})", actor=actor)
        return CloseOutcome(
            CloseOutcome.FAILED, f"close not filled (status {answer.status})", position=position
        )
    return answer


def _close_lookup(
    *, position: Position, order: Order, gateway: ExchangeGateway, actor: str
) -> ExchangeOrder | CloseOutcome:
    """After a close whose answer was lost, look it up by its client id before anything else.

    Found -> its answer. Unknown to the exchange -> the close never arrived: OPEN again.
    Unreadable -> the position stays CLOSING and the outcome, an event and an alert say so;
    the guard protects a CLOSING position the exchange still holds and returns it to OPEN.
    """
    symbol = position.symbol
    try:
        found = gateway.fetch_order(
            symbol=symbol.name, client_order_id=order.client_order_id, conditional=False
        )
    except ArenaError as e:
        reason = (
            f"close outcome unknown (answer lost, lookup failed: {e}): position left CLOSING "
            "until the exchange is read; its exits stay in place"
        )
        _event(
            symbol=symbol,
            position=position,
            kind=TradeEvent.Kind.REJECTED,
            message=reason,
            actor=actor,
        )
        _alert(key=f"order_path.close_unknown.{symbol.name}", message=reason, symbol=symbol)
        return CloseOutcome(CloseOutcome.FAILED, reason, position=position)
    if found is None:
        _order_mark_failed(order, Order.Status.EXPIRED, ArenaError("unknown to exchange"))
        reason = "close never reached the exchange (not found by its client id)"
        _close_restore(position, reason=reason, actor=actor)
        return CloseOutcome(CloseOutcome.FAILED, reason, position=position)
    return found


def _close_restore(position: Position, *, reason: str = "", actor: str = "bot") -> None:
    """CLOSING -> OPEN, with an event row: the close did not happen."""
    if position.status == Position.Status.CLOSING:
        with transaction.atomic():
            position_transition(
                position,
                Position.Status.OPEN,
                reason=reason or "the close did not execute",
                actor=actor,
            )
            _event(
                symbol=position.symbol,
                position=position,
                kind=TradeEvent.Kind.REJECTED,
                message=f"{CLOSE_RESTORED}{reason or 'the close did not execute'}",
                actor=actor,
            )


def _close_finish(
    *,
    position: Position,
    reason: str,
    gateway: ExchangeGateway,
    actor: str,
    closed_by_us: bool,
    books: fills.PositionBooks | None = None,
    settled: bool = False,
) -> CloseOutcome:
    """The exchange is flat: remove the protection, read PnL from the fills, record the close.

    With ``books`` (the ledger already shows the close, ``fills.position_books_settled``) the
    close is recorded first, from them, and the remaining exits are cancelled after it, still
    under the symbol's lease so no new entry can meet them. ``settled``: the exits were settled
    already.
    """
    symbol = position.symbol
    if books is None:
        if not settled:
            fills.exits_settle(position=position, gateway=gateway)
        net, fees, exit_price, closed_at = _position_pnl(gateway=gateway, position=position)
    else:
        net, fees = books.realized_pnl, books.fees
        exit_price, closed_at = books.exit_price, books.closed_at
    with transaction.atomic():
        position_transition(
            position,
            Position.Status.CLOSED,
            reason=reason,
            actor=actor,
            follow=True,  # the exchange is flat: closed, whoever moved the record meanwhile
            fields={
                # The exchange time of the last fill; until the fills are read, when we saw it
                # flat.
                "closed_at": closed_at or timezone.now(),
                "close_reason": reason,
                "exit_price": exit_price,
                "realized_pnl": net,
                "fees": fees if fees is not None else position.fees,
                "awaiting_fills": net is None and fills.position_books_knowable(position=position),
            },
        )
        _event(
            symbol=symbol,
            position=position,
            kind=TradeEvent.Kind.CLOSED,
            message=f"{reason} @ {exit_price} PnL {net}"
            + ("" if closed_by_us else " (closed on the exchange)"),
            actor=actor,
        )
    if books is not None:
        fills.exits_cancel(position=position, gateway=gateway)
    logger.info(
        "[Close] %s %s @ %s | PnL %s USDT",
        position.symbol.name,
        reason,
        price_text(exit_price, position.symbol),
        _fmt_money(net),
    )
    return CloseOutcome(CloseOutcome.CLOSED, reason, pnl=net, position=position)


def _close_refused(position: Position, reason: str, actor: str) -> CloseOutcome:
    _event(
        symbol=position.symbol,
        position=position,
        kind=TradeEvent.Kind.CLOSE_REFUSED,
        message=reason,
        actor=actor,
    )
    return CloseOutcome(CloseOutcome.REFUSED, reason, position=position)


def _close_skip(position: Position, reason: str, actor: str) -> CloseOutcome:
    """Record why a partial close is skipped, once: the same reason again changes nothing."""
    if position.skip_reason != reason[:255]:
        with transaction.atomic():
            position.skip_reason = reason[:255]
            position.skip_reason_at = timezone.now()
            position.save(update_fields=["skip_reason", "skip_reason_at"])
            _event(
                symbol=position.symbol,
                position=position,
                kind=TradeEvent.Kind.SKIPPED,
                message=reason,
                actor=actor,
            )
        logger.info("[Skip] partial close of %s: %s", position.symbol.name, reason)
    return CloseOutcome(CloseOutcome.SKIPPED, reason, position=position)


def position_record_exchange_close(
    *,
    position: Position,
    gateway: ExchangeGateway | None = None,
    reason: str | None = None,
    actor: str = "guard",
) -> CloseOutcome:
    """Record a close that happened on the exchange (TP, SL, liquidation) from its fills.

    Refused while the exchange still shows the position. ``reason`` None: SL or TP when one of
    ours fired, else LIQUIDATION.
    """
    gateway = gateway or exchange_gateway()
    try:
        with symbol_lock(
            position.symbol_id, DEFAULT_TTL_SECONDS, wait_seconds=CLOSE_LOCK_WAIT_SECONDS
        ):
            symbol = position.symbol
            position.refresh_from_db()
            position.symbol = symbol  # its rules do not change under the lease: no re-read
            if not position.is_open:
                return CloseOutcome(
                    CloseOutcome.REFUSED, f"position is {position.status}", position=position
                )
            # When the user data stream has written every fill, the ledger alone shows the
            # position flat and tells its numbers: the exchange is not asked what it said.
            books = fills.position_books_settled(position=position)
            try:
                if books is None and (
                    gateway.fetch_position(symbol=position.symbol.name) is not None
                ):
                    return CloseOutcome(
                        CloseOutcome.REFUSED, "still open on the exchange", position=position
                    )
            except ArenaError as e:
                return CloseOutcome(
                    CloseOutcome.FAILED, f"exchange unreadable: {e}", position=position
                )
            return _record_exchange_close(
                position=position, gateway=gateway, reason=reason, actor=actor, books=books
            )
    except SymbolBusy as e:
        return CloseOutcome(CloseOutcome.REFUSED, f"symbol busy: {e}", position=position)


def _record_exchange_close(
    *,
    position: Position,
    gateway: ExchangeGateway,
    reason: str | None,
    actor: str,
    books: fills.PositionBooks | None = None,
) -> CloseOutcome:
    """Record the close with the reason SL or TP when that order of ours fired, else
    LIQUIDATION; exits settled once (one lookup each, a cancel only for one still working)."""
    if books is not None:
        # The ledger holds the fill that closed it, on the exit that fired.
        reason = reason or books.fired_exit
        if reason:
            return _close_finish(
                position=position,
                reason=reason,
                gateway=gateway,
                actor=actor,
                closed_by_us=False,
                books=books,
            )
    fills.exits_settle(position=position, gateway=gateway)
    if reason is None:
        reason = fills.fired_exit(position=position) or Position.CloseReason.LIQUIDATION
    return _close_finish(
        position=position,
        reason=reason,
        gateway=gateway,
        actor=actor,
        closed_by_us=False,
        settled=True,
    )


def position_replace_stop(
    *, position: Position, stop_price: Decimal, gateway: ExchangeGateway | None = None
) -> Order:
    """Move the stop-loss: the new stop is acknowledged before the old one is cancelled, so the
    position is never without one. Raises the exchange's error when the new stop is refused (the
    old one then stays)."""
    gateway = gateway or exchange_gateway()
    old = [o for o in position_exit_orders(position=position) if o.purpose == "SL"]
    with transaction.atomic():
        new = _exit_intent_create(position=position, kind=Order.Purpose.STOP_LOSS, price=stop_price)
    _order_mark_sent(new)
    try:
        try:
            answer = gateway.create_exit_order(
                symbol=position.symbol.name,
                side=new.side,
                kind="SL",
                stop_price=stop_price,
                client_order_id=new.client_order_id,
            )
        except OrderRejected as e:
            if e.code != CLOSE_POSITION_EXIT_EXISTS:
                raise
            answer = _replacement_stop_for_quantity(position=position, new=new, gateway=gateway)
    except ArenaError as e:
        _order_mark_failed(new, Order.Status.REJECTED, e)
        raise
    _order_apply(new, answer)
    for order in old:
        gone = gateway.cancel_order(
            symbol=position.symbol.name, client_order_id=order.client_order_id, conditional=True
        )
        order_transition(
            order,
            Order.Status.CANCELED if gone else Order.Status.EXPIRED,
            reason=f"stop-loss moved to {stop_price}",
            follow=True,
        )
    position.stop_loss_price = stop_price
    position.save(update_fields=["stop_loss_price"])
    _event(
        symbol=position.symbol,
        position=position,
        kind=TradeEvent.Kind.PROTECTION,
        message=f"stop-loss moved to {stop_price}",
    )
    return new


def _replacement_stop_for_quantity(
    *, position: Position, new: Order, gateway: ExchangeGateway
) -> ExchangeOrder:
    """Place ``new`` as a reduce-only stop for the position's size on the exchange.

    Binance keeps one closePosition stop per side (-4130), and the old stop is that one.
    Cancelling it first would leave the position bare until the new one is acknowledged, so
    the new stop goes in as a reduce-only order instead and the old one is cancelled after.
    The same client id is reused: the exchange refused the first send before acting on it.
    """
    held = gateway.fetch_position(symbol=position.symbol.name)
    if held is None:
        raise OrderRejected(
            f"stop of {position} not moved: no position on the exchange",
            code=CLOSE_POSITION_EXIT_EXISTS,
            action="create_exit_order",
        )
    new.close_position = False
    new.reduce_only = True
    new.quantity = held.quantity
    with db_write_lock:
        Order.objects.filter(pk=new.pk).update(
            close_position=False, reduce_only=True, quantity=held.quantity
        )
    return gateway.create_exit_order(
        symbol=position.symbol.name,
        side=new.side,
        kind="SL",
        stop_price=new.stop_price,
        client_order_id=new.client_order_id,
        quantity=held.quantity,
    )


# --------------------------------------------------------------------------- PnL from fills
def _position_pnl(
    *, gateway: ExchangeGateway, position: Position
) -> tuple[Decimal | None, Decimal | None, Decimal | None, datetime | None]:
    """(realized PnL net of every fee, fees, exit price, exchange time of the last fill) from
    the position's own fills (``trading.fills``); all None while they cannot be read."""
    books = fills.position_books_read(position=position, gateway=gateway)
    if books is None:
        return None, None, None, None
    return books.realized_pnl, books.fees, books.exit_price, books.closed_at


def _order_pnl(
    *, gateway: ExchangeGateway, position: Position, order_id: str
) -> tuple[Decimal, Decimal] | None:
    """(realized PnL net of its fees, fees) of one order's fills, recorded in the ledger."""
    order = position.orders.filter(exchange_order_id=order_id).first()
    if order is None:
        return None
    try:
        recorded = fills.order_fills_record(
            order=order, exchange_order_id=order_id, gateway=gateway, rates={}
        )
    except ArenaError:
        return None
    fees = sum((f.commission_usdt for f in recorded), Decimal(0))
    return sum((f.realized_pnl for f in recorded), Decimal(0)) - fees, fees


# --------------------------------------------------------------------------- order rows
def _order_intent_create(
    *,
    position: Position | None,
    purpose: str,
    side: str,
    order_type: str,
    quantity: Decimal | None = None,
    stop_price: Decimal | None = None,
    reduce_only: bool = False,
    close_position: bool = False,
    is_conditional: bool = False,
    symbol: Symbol | None = None,
) -> Order:
    """Store an order before it is sent, with a client order id derived from its own row.

    The id (``arena-<pk>-<purpose>-<created, base 36>``) is fixed before the first send, so a
    retry or a restart resends the same id, which the exchange and our lookups recognise. The
    creation time keeps ids unique across a rebuilt database whose primary keys restart.
    """
    order = Order.objects.create(
        symbol=position.symbol if position is not None else symbol,
        position=position,
        purpose=purpose,
        side=side,
        order_type=order_type,
        quantity=quantity,
        stop_price=stop_price,
        reduce_only=reduce_only,
        close_position=close_position,
        is_conditional=is_conditional,
        client_order_id=f"tmp-{uuid.uuid4().hex}"[:36],
    )
    order.client_order_id = client_order_id_for(order)
    order.save(update_fields=["client_order_id"])
    return order


def client_order_id_for(order: Order) -> str:
    """The exchange client order id of our order row (fits ``^[.A-Z:/a-z0-9_-]{1,36}$``)."""
    stamp = _base36(int(order.created_at.timestamp()))
    return f"{CLIENT_ID_PREFIX}{order.pk}-{order.purpose.lower()}-{stamp}"[:36]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while number:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
    return text or "0"


def _order_mark_sent(order: Order) -> None:
    order_transition(order, Order.Status.SENT, reason="sent", fields={"sent_at": timezone.now()})


def _order_apply(order: Order, answer: ExchangeOrder) -> None:
    """Copy the exchange's view of an order onto our row."""
    order_transition(
        order,
        answer.our_status,
        reason=f"the exchange says {answer.status}",
        fields={
            "exchange_order_id": answer.exchange_order_id[:40],
            "filled_quantity": answer.filled_quantity,
            "average_price": answer.average_price,
        },
        follow=True,
    )


def _order_mark_failed(order: Order, status: str, error: ArenaError) -> None:
    order_transition(
        order,
        status,
        reason=str(error),
        fields={"error_code": getattr(error, "code", None), "error_message": str(error)[:255]},
        follow=True,
    )


# --------------------------------------------------------------------------- events, alerts
def _event(
    *, symbol: Symbol, position: Position | None, kind: str, message: str, actor: str = "bot"
) -> None:
    with db_write_lock:
        TradeEvent.objects.create(
            symbol=symbol, position=position, kind=kind, message=message[:500], actor=actor[:150]
        )


def _alert(*, key: str, message: str, symbol: Symbol | None = None) -> None:
    """Log at ERROR and raise a monitoring alert."""
    logger.error("[Alert] %s", message)
    # An alert is a courtesy on top of the log line: it must never break the order path.
    try:
        alert_raise(key=key, severity="critical", message=message, symbol=symbol)
    except Exception:
        logger.exception("could not raise alert %s", key)


# --------------------------------------------------------------------------- formatting
def _fmt(value: Decimal | None) -> str:
    """A price for the log: plain digits, at least one decimal (100000.0, 959.18)."""
    if value is None:
        return "?"
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


def _fmt_qty(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _fmt_money(value: Decimal | None) -> str:
    return "?" if value is None else money_text(value)


# --------------------------------------------------------------------------- symbol filters
SYNCED_FIELDS = (
    "tick_size",
    "step_size",
    "min_qty",
    "max_qty",
    "market_step_size",
    "market_min_qty",
    "market_max_qty",
    "min_notional",
    "price_precision",
    "quantity_precision",
    "max_leverage",
)


@dataclass(frozen=True)
class SymbolSync:
    """What ``symbol_sync_filters`` did to one symbol."""

    symbol: str
    changes: tuple[tuple[str, str, str], ...] = ()  # (field, old, new)
    error: str = ""  # the exchange's filters fail our validation: nothing saved
    missing: bool = False  # known here, not listed (or not trading) on the exchange
    conflict: str = ""  # saved, but a rule now conflicts with it: the symbol was disabled

    def __str__(self) -> str:
        if self.missing:
            return f"{self.symbol}: not trading on the exchange (left as is)"
        if self.error:
            return f"{self.symbol}: NOT UPDATED: {self.error}"
        if not self.changes:
            return f"{self.symbol}: unchanged"
        text = f"{self.symbol}: " + ", ".join(f"{f}: {o} → {n}" for f, o, n in self.changes)
        return f"{text} (DISABLED: {self.conflict})" if self.conflict else text


def symbol_sync_filters(
    *, gateway: ExchangeGateway | None = None, actor: str = "sync_symbols"
) -> list[SymbolSync]:
    """Read every known symbol's filters from the exchange (exchangeInfo + leverageBracket),
    save what changed with a RuleChange row per field, and stamp ``filters_synced_at``."""
    gateway = gateway or exchange_gateway()
    rules = {r.symbol: r for r in gateway.fetch_symbol_rules()}
    now = timezone.now()
    results = []
    for symbol in Symbol.objects.order_by("name"):
        rule = rules.get(symbol.name)
        if rule is None:
            results.append(SymbolSync(symbol.name, missing=True))
            continue
        changes = []
        for name in SYNCED_FIELDS:
            old, new = getattr(symbol, name), getattr(rule, name)
            if old is None or Decimal(old) != Decimal(new):
                field = Symbol._meta.get_field(name)
                if getattr(field, "decimal_places", None) is not None:
                    # Stored at the column's scale, so the history compares like with like.
                    new = Decimal(new).quantize(Decimal(1).scaleb(-field.decimal_places))
                changes.append((name, _plain_text(old), _plain_text(new)))
                setattr(symbol, name, new)
        symbol.filters_synced_at = now
        # The exchange's filters are stored whatever our rules say (stale ticks and steps get
        # orders rejected); a leverage the exchange no longer allows disables the symbol instead.
        conflict = _sync_leverage_conflict(symbol=symbol)
        if conflict:
            changes.append(("enabled", "True", "False"))
            symbol.enabled = False
        try:
            rule_save(instance=symbol, actor=actor)
        except ValidationError as e:
            symbol.refresh_from_db()
            results.append(SymbolSync(symbol.name, error="; ".join(e.messages)))
            continue
        if conflict:
            _alert(
                key=f"sync.leverage_conflict.{symbol.name}",
                message=f"{symbol.name} DISABLED by {actor}: {conflict}",
                symbol=symbol,
            )
        results.append(SymbolSync(symbol.name, tuple(changes), conflict=conflict))
    return results


def _sync_leverage_conflict(*, symbol: Symbol) -> str:
    """Why ``symbol`` (its new filters set, not saved) cannot stay enabled; empty when it can."""
    if not symbol.enabled:
        return ""
    try:
        profile = risk_profile_for_symbol(symbol=symbol)
    except NoActiveRiskProfile:
        return ""
    if profile.leverage <= symbol.max_leverage:
        return ""
    owner = "its own profile" if symbol.risk_profile_id else "the active profile"
    return (
        f"the exchange's maximum leverage is now {symbol.max_leverage}x, below the "
        f"{profile.leverage}x of {owner} {profile.name}: lower that profile's leverage to "
        f"{symbol.max_leverage}x or less (or give {symbol.name} a profile of its own that fits), "
        "then enable the symbol again"
    )


def _plain_text(value: object) -> str:
    if isinstance(value, Decimal):
        return _fmt_qty(value)
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- candles
KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
KLINE_PAGE = 1500  # the most Binance returns per klines request
INTERVAL_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


def candles_download(
    *,
    symbol: str,
    days: int,
    interval: str,
    out_dir: Path,
    gateway: ExchangeGateway | None = None,
    now: datetime | None = None,
    page_size: int = KLINE_PAGE,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Save the last ``days`` of closed candles as Binance kline files, one CSV per UTC day
    (``BTCUSDT-1m-2026-01-05.csv``, with the header of data.binance.vision's newer files).
    ``progress(candles so far, candles expected)`` is called after each page."""
    if interval not in INTERVAL_MS:
        raise ValueError(f"interval must be one of {', '.join(INTERVAL_MS)}")
    gateway = gateway or exchange_gateway()
    step = INTERVAL_MS[interval]
    end_ms = int((now or datetime.now(tz=UTC)).timestamp() * 1000)
    start_ms = end_ms - days * 86_400_000
    rows: list[list] = []
    cursor = start_ms
    while cursor < end_ms:
        page = gateway.fetch_kline_rows(
            symbol=symbol, interval=interval, limit=page_size, start_ms=cursor, end_ms=end_ms
        )
        # Only closed candles: the current one would change after it is written.
        page = [row for row in page if int(row[6]) < end_ms]
        if not page:
            break
        rows.extend(page)
        cursor = int(page[-1][0]) + step
        if progress is not None:
            progress(len(rows), (end_ms - start_ms) // step)
    by_day: dict[str, list[list]] = {}
    for row in rows:
        day = datetime.fromtimestamp(int(row[0]) / 1000, tz=UTC).date().isoformat()
        by_day.setdefault(day, []).append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for day, day_rows in sorted(by_day.items()):
        path = out_dir / f"{symbol}-{interval}-{day}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            handle.write(KLINE_HEADER + "\n")
            writer.writerows(day_rows)
        written.append(path)
    return written


def exchange_position_flatten(
    *, symbol: Symbol, gateway: ExchangeGateway, actor: str = "operator"
) -> ExchangeOrder | None:
    """Close at market, reduce-only, whatever position the exchange holds in ``symbol`` that no
    open record here covers (an entry left opening, a position opened by hand). The close is
    stored as an intent first, like every order. None when the exchange shows no position."""
    live = gateway.fetch_position(symbol=symbol.name)
    if live is None:
        return None
    side = "SELL" if live.side == Position.Side.LONG else "BUY"
    # The record left OPENING or CLOSING owns this close: its fills are that position's.
    record = position_open_for_symbol(symbol=symbol)
    with transaction.atomic():
        order = _order_intent_create(
            position=record if record is not None and record.side == live.side else None,
            symbol=symbol,
            purpose=Order.Purpose.CLOSE,
            side=side,
            order_type="MARKET",
            quantity=live.quantity,
            reduce_only=True,
        )
        TradeEvent.objects.create(
            symbol=symbol,
            kind=TradeEvent.Kind.CLOSED,
            message=f"flatten {live.side} {live.quantity} with no open record ({actor})",
            actor=actor,
        )
    _order_mark_sent(order)
    try:
        answer = gateway.create_market_order(
            symbol=symbol.name,
            side=side,
            quantity=live.quantity,
            client_order_id=order.client_order_id,
            reduce_only=True,
        )
    except OrderRejected as exc:
        _order_mark_failed(order, Order.Status.REJECTED, exc)
        raise
    except ArenaError as exc:
        _order_mark_failed(order, Order.Status.UNKNOWN, exc)
        raise
    _order_apply(order, answer)
    return answer


def exit_order_place(
    *,
    position: Position,
    kind: str,
    price: Decimal,
    gateway: ExchangeGateway,
    side: str | None = None,
    generation: int | None = None,
) -> Order:
    """Place one stop-loss or take-profit closing the ``side`` position the exchange holds
    (default: the recorded side): intent stored under its deterministic id, sent, recorded.

    For the guard's re-attach. Raises ``ExitInFlight`` when this generation is already stored
    (someone else is placing it), ``OrderRejected`` (recorded as REJECTED) when the exchange
    refuses it, and any other ``ArenaError`` after recording the order as UNKNOWN: the answer
    may have been lost, so the next attempt looks it up by its client id first.
    """
    order = _exit_intent_create(
        position=position, kind=kind, price=price, side=side, generation=generation
    )
    return exit_order_send(order=order, gateway=gateway)


def exit_order_send(*, order: Order, gateway: ExchangeGateway) -> Order:
    """Send a stored stop-loss or take-profit under its own client id, and record the answer.

    Also for an exit stored earlier that the exchange does not know (its sender died, or gave
    up on a lost answer): sent again under the same id, it cannot become a second order, since
    the exchange refuses a duplicate id (-4116) and the gateway then looks the order up.
    Raises like ``exit_order_place``.
    """
    kind, price = order.purpose, order.stop_price
    _order_mark_sent(order)
    try:
        answer = gateway.create_exit_order(
            symbol=order.symbol.name,
            side=order.side,
            kind=kind,
            stop_price=price,
            client_order_id=order.client_order_id,
        )
    except OrderRejected as exc:
        _order_mark_failed(order, Order.Status.REJECTED, exc)
        raise
    except ArenaError as exc:
        _order_mark_failed(order, Order.Status.UNKNOWN, exc)
        raise
    _order_apply(order, answer)
    return order


def order_refresh(*, order: Order, found: ExchangeOrder) -> None:
    """Record what the exchange reports of one of our orders."""
    _order_apply(order, found)
