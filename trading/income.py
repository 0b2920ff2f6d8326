"""Wallet movements that are not trades: funding and liquidation clearance, recorded once.

``income_record`` is the one door (the type and the exchange's tranId make a second write a
no-op). Each entry goes to the position that held its symbol at the time: funding to the position
open then, a liquidation's clearance fee (INSURANCE_CLEAR) to the position whose liquidation
fill came just before it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q

from exchange.gateway import ExchangeGateway, IncomeEntry
from trading.locks import db_write_lock
from trading.models import Fill, Income, Order, Position, Symbol

RECORDED_TYPES = (Income.Type.FUNDING_FEE, Income.Type.INSURANCE_CLEAR)
# A clearance fee is booked with the liquidation's fill; this bounds where to look for it.
CLEARANCE_WINDOW = timedelta(seconds=60)


def income_record(*, entry: IncomeEntry) -> tuple[Income | None, bool]:
    """Record one funding or clearance entry; (income, created). Other types are not ours to
    keep here (trades' PnL and fees are in the fills): (None, False)."""
    if entry.income_type not in RECORDED_TYPES or not entry.tran_id:
        return None, False
    existing = Income.objects.filter(income_type=entry.income_type, tran_id=entry.tran_id).first()
    if existing is not None:
        return existing, False
    symbol = Symbol.objects.filter(name=entry.symbol).first()
    if symbol is None:
        return None, False
    try:
        with db_write_lock, transaction.atomic():
            income = Income.objects.create(
                symbol=symbol,
                position=_owner(symbol=symbol, entry=entry),
                income_type=entry.income_type,
                tran_id=entry.tran_id,
                amount=entry.amount,
                asset=entry.asset,
                time=entry.time,
            )
    except IntegrityError:
        return Income.objects.get(income_type=entry.income_type, tran_id=entry.tran_id), False
    return income, True


def _owner(*, symbol: Symbol, entry: IncomeEntry) -> Position | None:
    if entry.income_type == Income.Type.INSURANCE_CLEAR:
        fill = (
            Fill.objects.filter(
                symbol=symbol,
                order__purpose=Order.Purpose.LIQUIDATION,
                time__lte=entry.time,
                time__gte=entry.time - CLEARANCE_WINDOW,
            )
            .order_by("-time", "-trade_id")
            .first()
        )
        return fill.position if fill is not None else None
    # Funding: the position whose first fill came before it and which was not closed yet.
    return (
        Position.objects.filter(symbol=symbol, fills__time__lte=entry.time)
        .filter(Q(closed_at__isnull=True) | Q(closed_at__gte=entry.time))
        .exclude(status=Position.Status.FAILED)
        .order_by("-id")
        .first()
    )


def incomes_sync(
    *,
    gateway: ExchangeGateway,
    start: datetime,
    end: datetime,
    symbol: str | None = None,
    income_type: str | None = None,
) -> list[Income]:
    """Read the income history of a window (at most 7 days) and record its funding and
    clearance entries; return those recorded now."""
    created = []
    for entry in gateway.fetch_income(start=start, end=end, symbol=symbol, income_type=income_type):
        income, new = income_record(entry=entry)
        if new and income is not None:
            created.append(income)
    return created


def liquidation_clearance_record(*, position: Position, gateway: ExchangeGateway) -> None:
    """Record the clearance fee of the position's liquidation (1 request), if it was
    liquidated."""
    first = position.fills.filter(order__purpose=Order.Purpose.LIQUIDATION).order_by("time").first()
    if first is None:
        return
    incomes_sync(
        gateway=gateway,
        start=first.time,
        end=first.time + CLEARANCE_WINDOW,
        symbol=position.symbol.name,
        income_type=Income.Type.INSURANCE_CLEAR,
    )
