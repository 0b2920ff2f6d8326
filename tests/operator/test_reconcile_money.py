"""Reconcile compares money: a planted PnL difference and a missing fill are found, and it agrees
only when the money agrees."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db.models import F

from monitoring.models import Alert
from trading.books_reconcile import DAY_MONEY, FILL_MISSING, POSITION_MONEY
from trading.models import Fill, Position
from trading.reconcile import reconcile
from trading.services import CloseOutcome, position_close

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def closed_trade(funded_market: object, open_position: Callable[[str, str], Position]) -> Position:
    """A BTCUSDT long opened and closed at a profit through the order path."""
    position = open_position("BTCUSDT", "LONG")
    funded_market.set_price("BTCUSDT", "100200")
    assert position_close(position=position, reason="MANUAL").status == CloseOutcome.CLOSED
    position.refresh_from_db()
    return position


def kinds(report) -> list[str]:
    return [d.kind for d in report.differences]


def test_reconcile_when_books_match_the_exchange_then_agrees(closed_trade: Position) -> None:
    report = reconcile(repair=False)

    assert report.differences == []
    assert report.ok
    assert closed_trade.fills.count() == 2


def test_reconcile_when_position_pnl_planted_off_by_2_cents_then_finding_and_alert(
    closed_trade: Position,
) -> None:
    Position.objects.filter(pk=closed_trade.pk).update(
        realized_pnl=F("realized_pnl") + Decimal("0.02")
    )

    report = reconcile(repair=True)

    assert not report.ok
    assert kinds(report) == [POSITION_MONEY]
    assert "difference 0.02 USDT" in report.differences[0].detail
    assert Alert.objects.filter(key__startswith="reconcile.money.position").exists()


def test_reconcile_when_position_pnl_off_by_under_a_cent_then_agrees(
    closed_trade: Position,
) -> None:
    Position.objects.filter(pk=closed_trade.pk).update(
        realized_pnl=F("realized_pnl") + Decimal("0.009")
    )

    assert reconcile(repair=False).ok


def test_reconcile_when_fill_missing_then_found_repaired_and_agrees_after(
    closed_trade: Position,
) -> None:
    exit_fill = closed_trade.fills.get(side="SELL")
    trade_id = exit_fill.trade_id
    exit_fill.delete()

    found = reconcile(repair=False)
    repaired = reconcile(repair=True)
    after = reconcile(repair=False)

    assert not found.ok
    assert FILL_MISSING in kinds(found) and DAY_MONEY in kinds(found)
    assert f"trade {trade_id}" in next(
        d.detail for d in found.differences if d.kind == FILL_MISSING
    )
    assert Fill.objects.filter(trade_id=trade_id, position=closed_trade).exists()
    assert any(d.repaired for d in repaired.differences)
    assert after.ok and after.differences == []
