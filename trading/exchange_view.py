"""The exchange as the guard last read it, kept for pages that must not ask the exchange.

The guard already reads every position and open order each pass; storing that read costs one
query and lets the dashboard, the Telegram console and anyone else show positions, marks and
unrealized PnL with the age of the data, for any number of viewers, at no request weight.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from trading.models import ExchangeView

logger = logging.getLogger(__name__)
VIEW_ID = 1


@dataclass(frozen=True)
class ViewPosition:
    symbol: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    leverage: int


@dataclass(frozen=True)
class ViewOrder:
    symbol: str
    order_type: str
    side: str
    stop_price: Decimal | None
    reduce_only: bool = False
    close_position: bool = False


@dataclass(frozen=True)
class LastExchangeView:
    """The stored read, parsed; ``taken_at`` None when the guard has not read the exchange yet."""

    taken_at: datetime | None
    positions: dict[str, ViewPosition]
    orders: list[ViewOrder]

    def age_seconds(self, *, now: datetime | None = None) -> int | None:
        if self.taken_at is None:
            return None
        return max(0, int(((now or timezone.now()) - self.taken_at).total_seconds()))


def exchange_view_store(
    *, positions: Iterable[Any], orders: Mapping[str, Iterable[Any]], taken_at: datetime
) -> None:
    """Keep the guard's read (``ExchangePosition``s and ``ExchangeOrder``s by symbol).

    Never raises: a failure to store a copy for the pages must not fail the pass that protects.
    """
    position_rows = [
        {
            "symbol": p.symbol,
            "side": p.side,
            "quantity": str(p.quantity),
            "entry_price": str(p.entry_price),
            "mark_price": str(p.mark_price),
            "unrealized_pnl": str(p.unrealized_pnl),
            "leverage": p.leverage,
        }
        for p in positions
    ]
    order_rows = [
        {
            "symbol": o.symbol,
            "order_type": o.order_type,
            "side": o.side,
            "stop_price": None if o.stop_price is None else str(o.stop_price),
            "reduce_only": bool(o.reduce_only),
            "close_position": bool(o.close_position),
        }
        for symbol_orders in orders.values()
        for o in symbol_orders
    ]
    try:
        ExchangeView.objects.update_or_create(
            id=VIEW_ID,
            defaults={"taken_at": taken_at, "positions": position_rows, "orders": order_rows},
        )
    except Exception:  # see docstring
        logger.exception("could not store the exchange view")


def exchange_view_last() -> LastExchangeView:
    """The guard's last read of the exchange (no request to the exchange)."""
    row = ExchangeView.objects.filter(id=VIEW_ID).first()
    if row is None:
        return LastExchangeView(taken_at=None, positions={}, orders=[])
    positions = {
        p["symbol"]: ViewPosition(
            symbol=p["symbol"],
            side=p["side"],
            quantity=Decimal(p["quantity"]),
            entry_price=Decimal(p["entry_price"]),
            mark_price=Decimal(p["mark_price"]),
            unrealized_pnl=Decimal(p["unrealized_pnl"]),
            leverage=int(p["leverage"]),
        )
        for p in row.positions
    }
    orders = [
        ViewOrder(
            symbol=o["symbol"],
            order_type=o["order_type"],
            side=o["side"],
            stop_price=None if o["stop_price"] is None else Decimal(o["stop_price"]),
            reduce_only=bool(o.get("reduce_only", False)),
            close_position=bool(o.get("close_position", False)),
        )
        for o in row.orders
    ]
    return LastExchangeView(taken_at=row.taken_at, positions=positions, orders=orders)
