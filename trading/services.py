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

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from risk.checks import (
    check_daily_loss,
    check_free_margin,
    check_kill_switch,
    check_max_open_positions,
    check_one_position_per_symbol,
)
from risk.selectors import NoActiveRiskProfile, risk_profile_for_symbol
from risk.sizing import position_margin, position_size
from trading.errors import ArenaError, OperatorActionRequired, OrderRejected
from trading.exchange import ExchangeGateway, ExchangeOrder, Fill, exchange_gateway
from trading.formatting import money_text, price_text, quantity_text
from trading.locks import DEFAULT_TTL_SECONDS, SymbolBusy, db_write_lock, symbol_lock
from trading.models import Order, Position, Symbol, TradeEvent, TradingSwitch
from trading.rounding import ExitTooClose, check_quantity, exit_prices
from trading.selectors import (
    order_ids_of_other_positions,
    position_exit_orders,
    position_open_for_symbol,
    positions_open_count,
    realized_pnl_today,
)

logger = logging.getLogger(__name__)

ENTRY_SIDE = {"LONG": "BUY", "SHORT": "SELL"}
EXIT_SIDE = {"LONG": "SELL", "SHORT": "BUY"}
# A close waits this long for a trade cycle holding the symbol, instead of being refused.
CLOSE_LOCK_WAIT_SECONDS = 15.0
# Fills are read from a little before the position's row was written: the exchange's clock and
# ours differ by up to a second or so.
FILL_CLOCK_MARGIN = timedelta(seconds=5)
CLIENT_ID_PREFIX = "arena-"


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
) -> OpenOutcome:
    """Open a protected ``side`` (LONG/SHORT) position in ``symbol`` under the symbol's lock."""
    if side not in ENTRY_SIDE:
        raise ValueError(f"side must be LONG or SHORT, got {side!r}")
    gateway = gateway or exchange_gateway()
    try:
        with symbol_lock(symbol.pk, DEFAULT_TTL_SECONDS):
            return _open_locked(
                symbol=symbol, side=side, reason=reason, gateway=gateway, actor=actor
            )
    except SymbolBusy as e:
        return _refuse(symbol=symbol, side=side, reason=f"symbol busy: {e}", actor=actor)


def _open_locked(
    *, symbol: Symbol, side: str, reason: str, gateway: ExchangeGateway, actor: str
) -> OpenOutcome:
    try:
        profile = risk_profile_for_symbol(symbol=symbol)
    except NoActiveRiskProfile as e:
        return _refuse(symbol=symbol, side=side, reason=str(e), actor=actor)

    # 1. The rules that need only the database, before any request.
    denial = _check_database_rules(symbol=symbol, profile=profile, actor=actor)
    if denial:
        return _refuse(symbol=symbol, side=side, reason=denial, actor=actor)

    # 2. The exchange: account mode, an unrecorded position, equity, price.
    try:
        gateway.check_account_mode()
        live = gateway.fetch_position(symbol=symbol.name)
        balance = gateway.fetch_balance()
        price = gateway.fetch_mark_price(symbol=symbol.name)
    except OperatorActionRequired as e:
        return _refuse(symbol=symbol, side=side, reason=str(e), actor=actor)
    except ArenaError as e:
        return _refuse(symbol=symbol, side=side, reason=f"exchange unreadable: {e}", actor=actor)
    denial = check_one_position_per_symbol(
        symbol=symbol.name, open_in_db=False, open_on_exchange=live is not None
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
    )
    if not sizing.ok:
        return _refuse(symbol=symbol, side=side, reason=sizing.refusal or "", actor=actor)
    margin = position_margin(quantity=sizing.quantity, entry_price=price, leverage=profile.leverage)
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

    # 4. Leverage and margin type from the rules, written only where the exchange differs.
    try:
        gateway.ensure_symbol_settings(
            symbol=symbol.name, leverage=profile.leverage, margin_type=profile.margin_type
        )
    except ArenaError as e:
        return _refuse(
            symbol=symbol, side=side, reason=f"could not set leverage/margin: {e}", actor=actor
        )

    # 5. The position and its entry as committed intents, then the entry itself.
    try:
        position, entry = _entry_intent_create(
            symbol=symbol, side=side, quantity=sizing.quantity, profile=profile, reason=reason
        )
    except IntegrityError:
        return _refuse(
            symbol=symbol, side=side, reason=f"a position in {symbol} is already open", actor=actor
        )
    filled = _entry_send(position=position, entry=entry, gateway=gateway, actor=actor)
    if isinstance(filled, OpenOutcome):
        return filled

    # 6. Protection, priced from the actual fill.
    _protect(position=position, gateway=gateway, profile=profile, actor=actor)
    position.refresh_from_db()
    if position.status != Position.Status.OPEN:
        return OpenOutcome(OpenOutcome.FAILED, "no stop-loss could be placed: closed", position)
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
    from risk.services import post_trade_check

    try:
        post_trade_check(position=position, gateway=gateway)
    except ArenaError as e:
        logger.warning("post-trade check of %s could not run: %s", symbol.name, e)
    position.refresh_from_db()
    return OpenOutcome(OpenOutcome.OPENED, reason, position)


def _check_database_rules(*, symbol: Symbol, profile, actor: str) -> str | None:
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
    denial = check_daily_loss(
        realized_today=realized_pnl_today(), limit=profile.daily_loss_limit_usd
    )
    if denial:
        from trading.switch import trading_switch_set

        trading_switch_set(enabled=False, reason=denial, actor="risk")
        return denial
    return None


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
    _order_mark_sent(entry)
    try:
        answer = gateway.create_market_order(
            symbol=symbol.name,
            side=entry.side,
            quantity=entry.quantity,
            client_order_id=entry.client_order_id,
            reduce_only=False,
        )
        if answer.filled_quantity <= 0:
            # Answered before the fill was known: the lookup by our id tells.
            answer = (
                gateway.fetch_order(
                    symbol=symbol.name, client_order_id=entry.client_order_id, conditional=False
                )
                or answer
            )
    except OrderRejected as e:
        _order_mark_failed(entry, Order.Status.REJECTED, e)
        _position_fail(position, f"entry rejected ({e.code}): {e}", actor=actor)
        return OpenOutcome(OpenOutcome.FAILED, f"entry rejected ({e.code}): {e}", position)
    except ArenaError as e:
        # The answer is lost even after the lookups of the retry policy. The position stays
        # OPENING (it blocks the symbol) for the guard to reconcile with the exchange.
        _order_mark_failed(entry, Order.Status.UNKNOWN, e)
        message = f"entry of {position} answer lost: {e}; the guard will reconcile"
        _alert(key=f"order_path.entry_unknown.{symbol.name}", message=message, symbol=symbol)
        _event(symbol=symbol, position=position, kind=TradeEvent.Kind.FAILED, message=message)
        return OpenOutcome(OpenOutcome.FAILED, message, position)
    return _entry_record_fill(position=position, entry=entry, answer=answer, actor=actor)


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
        position.quantity = answer.filled_quantity
        position.entry_price = answer.average_price
        position.status = Position.Status.OPEN
        position.save(update_fields=["quantity", "entry_price", "status"])
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
    """Finish an entry whose answer was lost (a position left OPENING): look the entry up by
    its client order id; filled -> record the fill and place TP/SL as ``position_open`` would;
    unknown to the exchange or unfilled -> FAILED. For the guard and restarts."""
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
                answer = gateway.fetch_order(
                    symbol=position.symbol.name,
                    client_order_id=entry.client_order_id,
                    conditional=False,
                )
            except ArenaError as e:
                return OpenOutcome(OpenOutcome.FAILED, f"entry lookup failed: {e}", position)
            if answer is None:
                _order_mark_failed(
                    entry, Order.Status.EXPIRED, ArenaError("unknown to the exchange")
                )
                _position_fail(position, "the entry never reached the exchange", actor=actor)
                return OpenOutcome(
                    OpenOutcome.FAILED, "the entry never reached the exchange", position
                )
            filled = _entry_record_fill(position=position, entry=entry, answer=answer, actor=actor)
            if isinstance(filled, OpenOutcome):
                return filled
            profile = risk_profile_for_symbol(symbol=position.symbol)
            _protect(position=position, gateway=gateway, profile=profile, actor=actor)
            position.refresh_from_db()
            if position.status != Position.Status.OPEN:
                return OpenOutcome(OpenOutcome.FAILED, "no stop-loss could be placed", position)
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
        sl = _exit_intent_create(position=position, kind=Order.Purpose.STOP_LOSS, price=stop_loss)
        tp = _exit_intent_create(
            position=position, kind=Order.Purpose.TAKE_PROFIT, price=take_profit
        )
    results = _exits_send_concurrently(orders=[sl, tp], gateway=gateway)
    sl_result, tp_result = results[sl.pk], results[tp.pk]
    if isinstance(tp_result, BaseException):
        message = f"take-profit of {position} not placed: {tp_result}; the guard re-attaches it"
        _alert(key=f"order_path.tp_missing.{symbol.name}", message=message, symbol=symbol)
    if isinstance(sl_result, BaseException):
        _no_stop(position=position, gateway=gateway, why=str(sl_result), actor=actor)


def _exit_intent_create(*, position: Position, kind: str, price: Decimal) -> Order:
    return _order_intent_create(
        position=position,
        purpose=kind,
        side=EXIT_SIDE[position.side],
        order_type="STOP_MARKET" if kind == Order.Purpose.STOP_LOSS else "TAKE_PROFIT_MARKET",
        stop_price=price,
        close_position=True,
        is_conditional=True,
    )


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
            kwargs={"order": order, "gateway": gateway.clone(), "results": results},
            name=f"exit-{order.client_order_id}",
        )
        for order in orders
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


def _no_stop(*, position: Position, gateway: ExchangeGateway, why: str, actor: str) -> None:
    """A position without a stop is never left open: close it now and raise an alert."""
    symbol = position.symbol
    message = f"stop-loss of {position} could not be placed ({why}): closing it at market"
    logger.error("[NoStop] %s", message)
    _alert(key=f"order_path.no_stop.{symbol.name}", message=message, symbol=symbol)
    outcome = position_close(
        position=position,
        reason=Position.CloseReason.EMERGENCY,
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
        position.status = Position.Status.FAILED
        position.closed_at = timezone.now()
        position.save(update_fields=["status", "closed_at"])
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
        position.status = Position.Status.CLOSING
        position.save(update_fields=["status"])
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
        with transaction.atomic():
            position.quantity = remaining.quantity
            position.status = Position.Status.OPEN
            position.save(update_fields=["quantity", "status"])
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
        _close_restore(position)
        _event(
            symbol=position.symbol,
            position=position,
            kind=TradeEvent.Kind.REJECTED,
            message=f"close rejected ({e.code}): {e}",
            actor=actor,
        )
        return CloseOutcome(CloseOutcome.REJECTED, str(e), code=e.code, position=position)
    except ArenaError as e:
        # Unknown whether it went through: CLOSING stays, the guard reads the exchange.
        _order_mark_failed(order, Order.Status.UNKNOWN, e)
        return CloseOutcome(CloseOutcome.FAILED, f"close answer lost: {e}", position=position)
    _order_apply(order, answer)
    if answer.filled_quantity <= 0:
        _close_restore(position)
        return CloseOutcome(
            CloseOutcome.FAILED, f"close not filled (status {answer.status})", position=position
        )
    return answer


def _close_restore(position: Position) -> None:
    if position.status == Position.Status.CLOSING:
        position.status = Position.Status.OPEN
        position.save(update_fields=["status"])


def _close_finish(
    *, position: Position, reason: str, gateway: ExchangeGateway, actor: str, closed_by_us: bool
) -> CloseOutcome:
    """The exchange is flat: remove the protection, read PnL from the fills, record the close."""
    symbol = position.symbol
    for order in position_exit_orders(position=position):
        try:
            gone = gateway.cancel_order(
                symbol=symbol.name,
                client_order_id=order.client_order_id,
                conditional=order.is_conditional,
            )
            order.status = Order.Status.CANCELED if gone else Order.Status.EXPIRED
            order.save(update_fields=["status", "updated_at"])
        except ArenaError as e:
            logger.warning("could not cancel %s after the close: %s", order.client_order_id, e)
    net, fees, exit_price = _position_pnl(gateway=gateway, position=position)
    with transaction.atomic():
        position.status = Position.Status.CLOSED
        position.closed_at = timezone.now()
        position.close_reason = reason
        position.exit_price = exit_price
        position.realized_pnl = net
        position.fees = fees if fees is not None else position.fees
        position.save(
            update_fields=[
                "status",
                "closed_at",
                "close_reason",
                "exit_price",
                "realized_pnl",
                "fees",
            ]
        )
        _event(
            symbol=symbol,
            position=position,
            kind=TradeEvent.Kind.CLOSED,
            message=f"{reason} @ {exit_price} PnL {net}"
            + ("" if closed_by_us else " (closed on the exchange)"),
            actor=actor,
        )
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
            position.refresh_from_db()
            if not position.is_open:
                return CloseOutcome(
                    CloseOutcome.REFUSED, f"position is {position.status}", position=position
                )
            try:
                if gateway.fetch_position(symbol=position.symbol.name) is not None:
                    return CloseOutcome(
                        CloseOutcome.REFUSED, "still open on the exchange", position=position
                    )
            except ArenaError as e:
                return CloseOutcome(
                    CloseOutcome.FAILED, f"exchange unreadable: {e}", position=position
                )
            return _record_exchange_close(
                position=position, gateway=gateway, reason=reason, actor=actor
            )
    except SymbolBusy as e:
        return CloseOutcome(CloseOutcome.REFUSED, f"symbol busy: {e}", position=position)


def _record_exchange_close(
    *, position: Position, gateway: ExchangeGateway, reason: str | None, actor: str
) -> CloseOutcome:
    if reason is None:
        reason = _fired_exit(position=position, gateway=gateway) or Position.CloseReason.LIQUIDATION
    return _close_finish(
        position=position, reason=reason, gateway=gateway, actor=actor, closed_by_us=False
    )


def _fired_exit(*, position: Position, gateway: ExchangeGateway) -> str | None:
    """SL or TP when that order of ours fired; None when neither did."""
    fired = position.orders.filter(
        purpose__in=(Order.Purpose.STOP_LOSS, Order.Purpose.TAKE_PROFIT),
        status__in=(Order.Status.TRIGGERED, Order.Status.FILLED),
    ).first()
    if fired is not None:
        return fired.purpose  # already seen firing (e.g. by an earlier guard pass)
    for order in position_exit_orders(position=position):
        try:
            live = gateway.fetch_order(
                symbol=position.symbol.name,
                client_order_id=order.client_order_id,
                conditional=order.is_conditional,
            )
        except ArenaError:
            continue
        if live is not None and live.status in ("TRIGGERED", "FINISHED", "FILLED"):
            _order_apply(order, live)
            return order.purpose
    return None


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
        answer = gateway.create_exit_order(
            symbol=position.symbol.name,
            side=new.side,
            kind="SL",
            stop_price=stop_price,
            client_order_id=new.client_order_id,
        )
    except ArenaError as e:
        _order_mark_failed(new, Order.Status.REJECTED, e)
        raise
    _order_apply(new, answer)
    for order in old:
        gone = gateway.cancel_order(
            symbol=position.symbol.name, client_order_id=order.client_order_id, conditional=True
        )
        order.status = Order.Status.CANCELED if gone else Order.Status.EXPIRED
        order.save(update_fields=["status", "updated_at"])
    position.stop_loss_price = stop_price
    position.save(update_fields=["stop_loss_price"])
    _event(
        symbol=position.symbol,
        position=position,
        kind=TradeEvent.Kind.PROTECTION,
        message=f"stop-loss moved to {stop_price}",
    )
    return new


# --------------------------------------------------------------------------- PnL from fills
def _position_fills(*, gateway: ExchangeGateway, position: Position) -> list[Fill]:
    since = position.opened_at - FILL_CLOCK_MARGIN
    others = order_ids_of_other_positions(position=position)
    return [
        f
        for f in gateway.fetch_fills(symbol=position.symbol.name, since=since)
        if f.order_id not in others
    ]


def _position_pnl(
    *, gateway: ExchangeGateway, position: Position
) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """(realized PnL net of every fee, fees, average exit price) from the exchange's fills."""
    try:
        fills = _position_fills(gateway=gateway, position=position)
    except ArenaError as e:
        logger.warning("fills of %s unreadable, PnL left empty: %s", position, e)
        return None, None, None
    exit_side = EXIT_SIDE[position.side]
    exits = [f for f in fills if f.side == exit_side]
    fees = sum((f.commission for f in fills), Decimal(0))
    net = sum((f.realized_pnl for f in fills), Decimal(0)) - fees
    quantity = sum((f.quantity for f in exits), Decimal(0))
    exit_price = None
    if quantity:
        notional = sum((f.price * f.quantity for f in exits), Decimal(0))
        exit_price = (notional / quantity).quantize(position.symbol.tick_size)
    return net, fees, exit_price


def _order_pnl(
    *, gateway: ExchangeGateway, position: Position, order_id: str
) -> tuple[Decimal, Decimal] | None:
    """(realized PnL net of its fees, fees) of one order's fills."""
    try:
        fills = [
            f for f in _position_fills(gateway=gateway, position=position) if f.order_id == order_id
        ]
    except ArenaError:
        return None
    fees = sum((f.commission for f in fills), Decimal(0))
    return sum((f.realized_pnl for f in fills), Decimal(0)) - fees, fees


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
    order.status = Order.Status.SENT
    order.sent_at = timezone.now()
    with db_write_lock:
        Order.objects.filter(pk=order.pk).update(status=order.status, sent_at=order.sent_at)


_STATUS = {
    "NEW": Order.Status.OPEN,
    "PARTIALLY_FILLED": Order.Status.OPEN,
    "FILLED": Order.Status.FILLED,
    "CANCELED": Order.Status.CANCELED,
    "EXPIRED": Order.Status.EXPIRED,
    "EXPIRED_IN_MATCH": Order.Status.EXPIRED,
    "REJECTED": Order.Status.REJECTED,
    "TRIGGERED": Order.Status.TRIGGERED,
    "FINISHED": Order.Status.TRIGGERED,
    "TRIGGERING": Order.Status.OPEN,
}


def _order_apply(order: Order, answer: ExchangeOrder) -> None:
    """Copy the exchange's view of an order onto our row."""
    order.status = _STATUS.get(answer.status, Order.Status.UNKNOWN)
    order.exchange_order_id = answer.exchange_order_id[:40]
    order.filled_quantity = answer.filled_quantity
    order.average_price = answer.average_price
    with db_write_lock:
        Order.objects.filter(pk=order.pk).update(
            status=order.status,
            exchange_order_id=order.exchange_order_id,
            filled_quantity=order.filled_quantity,
            average_price=order.average_price,
            updated_at=timezone.now(),
        )


def _order_mark_failed(order: Order, status: str, error: ArenaError) -> None:
    order.status = status
    order.error_code = getattr(error, "code", None)
    order.error_message = str(error)[:255]
    with db_write_lock:
        Order.objects.filter(pk=order.pk).update(
            status=status,
            error_code=order.error_code,
            error_message=order.error_message,
            updated_at=timezone.now(),
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
    """Log at ERROR and raise a monitoring alert when the monitoring app offers one."""
    logger.error("[Alert] %s", message)
    try:
        from monitoring.services import alert_raise
    except ImportError:
        return
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

    def __str__(self) -> str:
        if self.missing:
            return f"{self.symbol}: not trading on the exchange (left as is)"
        if self.error:
            return f"{self.symbol}: NOT UPDATED: {self.error}"
        if not self.changes:
            return f"{self.symbol}: unchanged"
        return f"{self.symbol}: " + ", ".join(f"{f}: {o} → {n}" for f, o, n in self.changes)


def symbol_sync_filters(
    *, gateway: ExchangeGateway | None = None, actor: str = "sync_symbols"
) -> list[SymbolSync]:
    """Read every known symbol's filters from the exchange (exchangeInfo + leverageBracket),
    save what changed with a RuleChange row per field, and stamp ``filters_synced_at``."""
    from django.core.exceptions import ValidationError

    from risk.services import rule_save

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
        try:
            rule_save(instance=symbol, actor=actor)
        except ValidationError as e:
            symbol.refresh_from_db()
            results.append(SymbolSync(symbol.name, error="; ".join(e.messages)))
            continue
        results.append(SymbolSync(symbol.name, tuple(changes)))
    return results


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
    with transaction.atomic():
        order = _order_intent_create(
            position=None,
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
    *, position: Position, kind: str, price: Decimal, gateway: ExchangeGateway
) -> Order:
    """Place one stop-loss or take-profit for an open position: intent stored, sent, recorded.

    For the guard's re-attach. Raises ``OrderRejected`` (recorded as REJECTED) when the
    exchange refuses it, and any other ``ArenaError`` after recording the order as UNKNOWN: the
    answer may have been lost, so the next attempt looks it up by its client id first.
    """
    with transaction.atomic():
        order = _exit_intent_create(position=position, kind=kind, price=price)
    _order_mark_sent(order)
    try:
        answer = gateway.create_exit_order(
            symbol=position.symbol.name,
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


def order_status_of(found: ExchangeOrder) -> str:
    """Our Order status for an order status the exchange reports."""
    return _STATUS.get(found.status, Order.Status.UNKNOWN)
