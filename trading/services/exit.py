"""Closing: a position closed by the bot, or its close on the exchange recorded."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from core.errors import ArenaError, OrderRejected
from core.formatting import price_text
from exchange.gateway import (
    ExchangeGateway,
    ExchangeOrder,
)
from exchange.retry import exchange_may_have_acted
from exchange.rounding import check_quantity
from risk.selectors import risk_profile_for_symbol
from trading import fills
from trading.gateway import exchange_gateway
from trading.locks import (
    DEFAULT_TTL_SECONDS,
    SymbolBusy,
    lease_is_ours,
    symbol_lock,
)
from trading.models import Order, Position, Symbol, TradeEvent
from trading.selectors import (
    position_open_for_symbol,
)
from trading.services.events import _alert, _event, _fmt, _fmt_money, _fmt_qty
from trading.services.orders import (
    EXIT_SIDE,
    _order_apply,
    _order_intent_create,
    _order_mark_failed,
    _order_mark_sent,
)
from trading.services.outcomes import CloseOutcome
from trading.services.pnl import _order_pnl, _position_pnl
from trading.transitions import position_transition

logger = logging.getLogger(__name__)


# A close waits this long for a trade cycle holding the symbol, instead of being refused.
CLOSE_LOCK_WAIT_SECONDS = 15.0


CLOSE_RESTORED = "CLOSING -> OPEN: "


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
