"""Realized PnL and fees of a position, from its own fills."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from core.errors import ArenaError
from exchange.gateway import (
    ExchangeGateway,
)
from trading import fills
from trading.models import Position

logger = logging.getLogger(__name__)


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
