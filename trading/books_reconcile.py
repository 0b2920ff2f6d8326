"""Reconcile the money: the ledger against the exchange's trades and income history.

Per closed position: its recorded fills against the exchange's trades of its own orders (read by
order id), and its recorded PnL and fees against what those trades say. Per UTC day: realized
PnL, commission (per asset), funding and liquidation clearance of the ledger against
``/fapi/v1/income``. A difference above ``TOLERANCE`` is a finding and an alert; "agree" only
when the money agrees. ``trading.reconcile`` adds these findings to its report.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from core.errors import ArenaError
from core.notify import alert_raise
from exchange.gateway import ExchangeGateway
from exchange.gateway import Fill as ExchangeFill
from trading.differences import Difference
from trading.fills import (
    fill_record,
    position_books,
    position_orders_fills_record,
    positions_books_complete,
)
from trading.income import income_record, incomes_sync
from trading.models import Fill, Income, Order, Position

logger = logging.getLogger(__name__)

TOLERANCE = Decimal("0.01")  # USDT: a larger difference is a finding
ACTOR = "reconcile"

FILL_MISSING = "fill missing"
FILL_NOT_ON_EXCHANGE = "fill not on exchange"
POSITION_MONEY = "position money differs"
PNL_UNKNOWN = "PnL unknown"
DAY_MONEY = "day money differs"
INCOME_MISSING = "income not recorded"
MONEY_UNREAD = "money not compared"


@dataclass(frozen=True)
class MoneyFinding:
    """One way the ledger and the exchange disagree about money."""

    kind: str
    symbol: str
    detail: str
    repairable: bool = False


def books_differences(
    *,
    gateway: ExchangeGateway,
    repair: bool,
    now: datetime | None = None,
    days: list[date] | None = None,
) -> list:
    """The money findings as ``trading.reconcile.Difference`` rows (repaired where safe and
    ``repair``), each unrepaired one also raised as an alert. Completes the closes that waited
    for their fills first."""

    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    days = days or [today - timedelta(days=1), today]
    try:
        positions_books_complete(gateway=gateway, actor=ACTOR)
    except ArenaError as e:
        logger.warning("reconcile: closes waiting for fills not completed: %s", e)
    try:
        _ledger_catch_up(gateway=gateway, days=days)
        findings = _findings(gateway=gateway, days=days)
    except ArenaError as e:
        finding = MoneyFinding(MONEY_UNREAD, "", f"the exchange's trades or income unreadable: {e}")
        findings = [(finding, None)]
    differences = []
    for finding, repair_action in findings:
        difference = Difference(
            kind=finding.kind,
            symbol=finding.symbol,
            detail=finding.detail,
            repairable=finding.repairable,
        )
        if repair and repair_action is not None:
            difference.outcome = repair_action()
            difference.repaired = True
        differences.append(difference)
        if not difference.repaired:
            _alert(finding)
    return differences


def _ledger_catch_up(*, gateway: ExchangeGateway, days: list[date]) -> None:
    """Record what the ledger is still owed before judging it: the fills of open positions'
    orders (entries, partial closes) and the days' funding (1 request per day)."""
    for position in Position.objects.filter(
        status__in=(Position.Status.OPEN, Position.Status.CLOSING)
    ).select_related("symbol"):
        position_orders_fills_record(position=position, gateway=gateway)
    for day in days:
        start = datetime.combine(day, time.min, tzinfo=UTC)
        incomes_sync(
            gateway=gateway,
            start=start,
            end=start + timedelta(days=1) - timedelta(milliseconds=1),
            income_type=Income.Type.FUNDING_FEE,
        )


def _findings(*, gateway: ExchangeGateway, days: list[date]) -> list[tuple[MoneyFinding, object]]:
    start = datetime.combine(min(days), time.min, tzinfo=UTC)
    end = datetime.combine(max(days) + timedelta(days=1), time.min, tzinfo=UTC)
    found: list[tuple[MoneyFinding, object]] = []
    for position in (
        Position.objects.filter(awaiting_fills=True).select_related("symbol").order_by("id")
    ):
        finding = MoneyFinding(
            PNL_UNKNOWN,
            position.symbol.name,
            f"position {position.id} closed ({position.close_reason}) but its fills are not "
            "readable yet: its PnL is unknown, entries are blocked under a daily loss limit",
        )
        found.append((finding, None))
    closed = (
        Position.objects.filter(
            status=Position.Status.CLOSED,
            awaiting_fills=False,
            closed_at__gte=start,
            closed_at__lt=end,
        )
        .select_related("symbol")
        .order_by("id")
    )
    for position in closed:
        if not position.orders.filter(purpose=Order.Purpose.ENTRY).exists():
            continue  # adopted from the exchange: no order of ours to read its trades by
        found += _position_findings(gateway=gateway, position=position)
    for day in days:
        found += _day_findings(gateway=gateway, day=day)
    return found


# --------------------------------------------------------------------------- per position
def _position_findings(
    *, gateway: ExchangeGateway, position: Position
) -> list[tuple[MoneyFinding, object]]:
    symbol = position.symbol.name
    trades: dict[int, tuple[Order, ExchangeFill]] = {}
    for order in position.orders.order_by("id"):
        exchange_id = _fills_order_id(order)
        if not exchange_id:
            continue
        for trade in gateway.fetch_order_fills(symbol=symbol, order_id=exchange_id):
            trades[trade.trade_id] = (order, trade)
    recorded = {f.trade_id: f for f in position.fills.all()}
    found: list[tuple[MoneyFinding, object]] = []
    for trade_id in sorted(set(trades) - set(recorded)):
        order, trade = trades[trade_id]
        finding = MoneyFinding(
            FILL_MISSING,
            symbol,
            f"position {position.id}: trade {trade_id} of order {trade.order_id} "
            f"({trade.side} {_plain(trade.quantity)} @ {_plain(trade.price)}, PnL "
            f"{_plain(trade.realized_pnl)}, fee {_plain(trade.commission)} "
            f"{trade.commission_asset}) is not in the ledger",
            repairable=True,
        )
        found.append((finding, _fill_repair(position=position, order=order, trade=trade)))
    for trade_id in sorted(set(recorded) - set(trades)):
        fill = recorded[trade_id]
        finding = MoneyFinding(
            FILL_NOT_ON_EXCHANGE,
            symbol,
            f"position {position.id}: recorded trade {trade_id} ({fill}) is not a trade of its "
            "orders on the exchange",
        )
        found.append((finding, None))
    own = [t for _, t in trades.values()]
    rates = {f.commission_asset: f.commission_usdt_rate for f in recorded.values()}
    fees = sum((t.commission * rates.get(t.commission_asset, Decimal(1)) for t in own), Decimal(0))
    clearance = position.incomes.filter(income_type=Income.Type.INSURANCE_CLEAR).aggregate(
        total=Sum("amount")
    )["total"] or Decimal(0)
    pnl = sum((t.realized_pnl for t in own), Decimal(0)) + clearance - fees
    ours = position.realized_pnl if position.realized_pnl is not None else Decimal(0)
    for name, here, there in (("PnL", ours, pnl), ("fees", position.fees, fees)):
        if abs(here - there) > TOLERANCE:
            finding = MoneyFinding(
                POSITION_MONEY,
                symbol,
                f"position {position.id} {name}: here {_money(here)}, the exchange's trades of "
                f"its orders {_money(there)} (difference {_money(here - there)} USDT)",
            )
            found.append((finding, None))
    return found


def _fills_order_id(order: Order) -> str:
    if order.is_conditional:
        return order.triggered_order_id
    if order.status in (Order.Status.INTENT, Order.Status.REJECTED):
        return ""
    return order.exchange_order_id


def _fill_repair(*, position: Position, order: Order, trade: ExchangeFill):
    def repair() -> str:
        rate = Fill.objects.filter(commission_asset=trade.commission_asset).values_list(
            "commission_usdt_rate", flat=True
        ).first() or Decimal(1)
        fill_record(order=order, trade=trade, usdt_rate=rate)
        books = position_books(position=position)
        Position.objects.filter(pk=position.pk).update(
            realized_pnl=books.realized_pnl,
            fees=books.fees,
            exit_price=books.exit_price,
            closed_at=books.closed_at,
        )
        return f"recorded; position PnL now {_money(books.realized_pnl)}"

    return repair


# --------------------------------------------------------------------------- per day
def _day_findings(*, gateway: ExchangeGateway, day: date) -> list[tuple[MoneyFinding, object]]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    end = start + timedelta(days=1) - timedelta(milliseconds=1)
    entries = gateway.fetch_income(start=start, end=end)
    exchange: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for entry in entries:
        exchange[(entry.income_type, entry.asset)] += entry.amount
    fills = Fill.objects.filter(time__gte=start, time__lte=end)
    ours: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    ours[("REALIZED_PNL", "USDT")] = fills.aggregate(total=Sum("realized_pnl"))["total"] or 0
    for row in fills.values("commission_asset").annotate(total=Sum("commission")):
        ours[("COMMISSION", row["commission_asset"])] = -row["total"]
    incomes = Income.objects.filter(time__gte=start, time__lte=end)
    for row in incomes.values("income_type", "asset").annotate(total=Sum("amount")):
        ours[(row["income_type"], row["asset"])] = row["total"]
    found: list[tuple[MoneyFinding, object]] = []
    recorded = set(Income.objects.values_list("income_type", "tran_id"))
    unrecorded = [
        e
        for e in entries
        if e.income_type in Income.Type.values and (e.income_type, e.tran_id) not in recorded
    ]
    checked = {"REALIZED_PNL", "COMMISSION", *Income.Type.values}
    for key in sorted(set(exchange) | set(ours)):
        income_type, asset = key
        if income_type not in checked:
            continue
        here, there = Decimal(ours.get(key, 0)), exchange.get(key, Decimal(0))
        if abs(here - there) <= TOLERANCE:
            continue
        missing = [e for e in unrecorded if e.income_type == income_type and e.asset == asset]
        if missing and abs(here + sum(e.amount for e in missing) - there) <= TOLERANCE:
            finding = MoneyFinding(
                INCOME_MISSING,
                "",
                f"{day}: {len(missing)} {income_type} entr(ies) of the exchange not recorded "
                f"({_money(there - here)} {asset})",
                repairable=True,
            )
            found.append((finding, _income_repair(missing)))
            continue
        finding = MoneyFinding(
            DAY_MONEY,
            "",
            f"{day} {income_type} {asset}: here {_money(here)}, the exchange's income history "
            f"{_money(there)} (difference {_money(here - there)})",
        )
        found.append((finding, None))
    return found


def _income_repair(entries: list):
    def repair() -> str:
        for entry in entries:
            income_record(entry=entry)
        return f"recorded {len(entries)}"

    return repair


# --------------------------------------------------------------------------- helpers
def _alert(finding: MoneyFinding) -> None:
    logger.error("[Books] %s %s: %s", finding.kind, finding.symbol, finding.detail)
    try:
        alert_raise(
            key=f"reconcile.money.{finding.kind.replace(' ', '_')}.{finding.symbol or 'account'}",
            severity="critical",
            message=f"Books: {finding.kind} {finding.symbol}: {finding.detail}".strip(),
        )
    except Exception:
        logger.exception("could not raise the books alert")


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _money(value: Decimal) -> str:
    return f"{Decimal(value).quantize(Decimal('0.00000001')).normalize():f}"
