"""Order rows: intents stored before the first send, answers applied, statuses."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

from django.utils import timezone

from core.errors import ArenaError
from exchange.gateway import (
    ExchangeOrder,
)
from trading.models import Order, Position, Symbol
from trading.transitions import order_transition

logger = logging.getLogger(__name__)


EXIT_SIDE = {"LONG": "SELL", "SHORT": "BUY"}


CLIENT_ID_PREFIX = "arena-"


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


def order_refresh(*, order: Order, found: ExchangeOrder) -> None:
    """Record what the exchange reports of one of our orders."""
    _order_apply(order, found)
