"""Protection: the stop-loss and take-profit of a position, placed and replaced."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

from django.db import IntegrityError, connection, transaction

from core.errors import ArenaError, OrderRejected
from exchange.gateway import (
    CLOSE_POSITION_EXIT_EXISTS,
    WOULD_TRIGGER,
    ExchangeGateway,
    ExchangeOrder,
)
from exchange.rounding import ExitTooClose, exit_prices
from trading.gateway import exchange_gateway
from trading.locks import (
    db_write_lock,
)
from trading.models import Order, Position, TradeEvent
from trading.selectors import (
    position_exit_orders,
)
from trading.services.events import _alert, _event
from trading.services.exit import position_close
from trading.services.orders import (
    CLIENT_ID_PREFIX,
    EXIT_SIDE,
    _base36,
    _order_apply,
    _order_mark_failed,
    _order_mark_sent,
)
from trading.services.outcomes import CloseOutcome
from trading.transitions import order_transition

logger = logging.getLogger(__name__)


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
