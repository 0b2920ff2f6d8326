"""Reads of trading data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Sum

from trading.models import Order, Position, Symbol


def symbol_get(*, name: str) -> Symbol | None:
    """The symbol called ``name`` (any case), or None."""
    return Symbol.objects.filter(name=name.upper()).first()


def position_open_for_symbol(*, symbol: Symbol) -> Position | None:
    """The open position (OPENING, OPEN or CLOSING) in ``symbol``; at most one exists."""
    return Position.objects.filter(symbol=symbol, status__in=Position.OPEN_STATUSES).first()


def positions_open_count() -> int:
    """How many positions are open across all symbols."""
    return Position.objects.filter(status__in=Position.OPEN_STATUSES).count()


@dataclass(frozen=True)
class DailyPnl:
    """Today's realized PnL as the daily loss limit and the dashboard read it."""

    realized: Decimal  # net of fees, positions closed since 00:00 UTC (exchange time)
    unknown: int  # closed positions whose fills are not read yet: their PnL is missing


def daily_pnl(*, now: datetime | None = None) -> DailyPnl:
    """Today's realized PnL, and how many closes it still lacks (awaiting their fills)."""
    return DailyPnl(
        realized=realized_pnl_today(now=now),
        unknown=Position.objects.filter(awaiting_fills=True).count(),
    )


def realized_pnl_today(*, now: datetime | None = None) -> Decimal:
    """Realized PnL (fees included) of the positions closed since 00:00 UTC today."""
    now = now or datetime.now(tz=UTC)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    total = Position.objects.filter(
        status=Position.Status.CLOSED, closed_at__gte=midnight
    ).aggregate(total=Sum("realized_pnl"))["total"]
    return total or Decimal(0)


def position_exit_orders(*, position: Position) -> list[Order]:
    """The position's stop-loss and take-profit orders that may still be on the exchange."""
    return list(
        position.orders.filter(
            purpose__in=(Order.Purpose.STOP_LOSS, Order.Purpose.TAKE_PROFIT),
            status__in=Order.ACTIVE_STATUSES,
        ).order_by("id")
    )


def order_ids_of_other_positions(*, position: Position) -> set[str]:
    """Exchange order ids of this symbol's other positions (to keep their fills out of PnL)."""
    return set(
        Order.objects.filter(symbol_id=position.symbol_id)
        .exclude(position=position)
        .exclude(exchange_order_id="")
        .values_list("exchange_order_id", flat=True)
    )
