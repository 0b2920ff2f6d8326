"""Opening: from a decision to a filled entry (risk checks, sizing, the entry order)."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ArenaError, OperatorActionRequired, OrderRejected
from core.formatting import price_text, quantity_text
from exchange.gateway import (
    ExchangeGateway,
    ExchangeOrder,
)
from exchange.retry import exchange_may_have_acted
from exchange.rounding import ExitTooClose, exit_prices
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
from risk.sizing import position_margin, position_size

# The module, not the function: the post-trade check imports this package's exit module, so
# either may be imported first.
from trading import post_trade
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
    position_open_for_symbol,
    positions_open_count,
)
from trading.services.events import _alert, _event
from trading.services.exit import CLOSE_RESTORED
from trading.services.orders import (
    _order_apply,
    _order_intent_create,
    _order_mark_failed,
    _order_mark_sent,
)
from trading.services.outcomes import OpenOutcome
from trading.services.protection import _protect
from trading.switch import trading_switch_set
from trading.transitions import position_transition

logger = logging.getLogger(__name__)


ENTRY_SIDE = {"LONG": "BUY", "SHORT": "SELL"}


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

    # 7. The post-trade check, with the same sizing arithmetic.
    try:
        # Read after the exits, held for the next entry: the book does not move until then.
        post_trade.post_trade_check(
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
