"""Case 1 of issue 11, the guard's side: a position recorded CLOSING (its exits and its close
refused by 503s) that the exchange still holds is seen by the sentinel and reconcile, and the
guard protects it and closes it within a few passes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Alert
from monitoring.sentinel import sentinel_pass
from tests.support.exchange import fast_gateway, open_algo_orders
from trading.models import Position, Symbol, TradeEvent
from trading.reconcile import EXIT_MISSING, STATUS_CONTRADICTED, reconcile
from trading.services import position_open

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = "/fapi/v1/order"
ALGO_ORDERS = "/fapi/v1/algoOrder"


@pytest.fixture
def stranded_closing(btc_market) -> Position:
    """A LONG filled, then 503s on every exit and close request: recorded CLOSING, naked."""
    # The entry takes the harmless first fault; every later order request gets a 503.
    btc_market.faults(kind="latency", method="POST", path=ORDERS, count=1, seconds=0)
    btc_market.faults(kind="error", method="POST", path=ORDERS, count=100_000)
    btc_market.faults(kind="error", method="POST", path=ALGO_ORDERS, count=100_000)
    outcome = position_open(
        symbol=Symbol.objects.get(name="BTCUSDT"),
        side="LONG",
        reason="test",
        gateway=fast_gateway(),
    )
    position = Position.objects.get(pk=outcome.position.pk)
    assert [row["positionAmt"] for row in btc_market.positions()] == ["0.011"]
    assert open_algo_orders(btc_market, "BTCUSDT") == []
    assert position.status in (Position.Status.CLOSING, Position.Status.OPEN)
    return position


def test_sentinel_and_reconcile_when_closing_position_naked_on_exchange_then_both_report_it(
    stranded_closing, btc_market
):
    # Act: the exchange still refuses orders; the watchers only read
    report = sentinel_pass(gateway=fast_gateway())
    differences = reconcile(repair=False, gateway=fast_gateway())

    # Assert
    keys = {f.key for f in report.findings}
    assert {"sentinel.exit_missing.BTCUSDT.SL", "sentinel.exit_missing.BTCUSDT.TP"} <= keys
    assert Alert.objects.filter(key="sentinel.exit_missing.BTCUSDT.SL").exists()
    assert not differences.ok
    assert [d.kind for d in differences.differences].count(EXIT_MISSING) == 2


def test_guard_pass_when_closing_position_still_on_exchange_then_protected_or_flat_in_3_passes(
    stranded_closing, btc_market, guard
):
    # Arrange: the faults stop
    btc_market.clear_faults()

    # Act
    reports = []
    for _ in range(3):
        reports.append(guard())
        held = btc_market.positions()
        types = sorted(o["orderType"] for o in open_algo_orders(btc_market, "BTCUSDT"))
        if not held or types == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]:
            break

    # Assert: flat (the close retried) or both exits on; the record tells the truth
    assert not held or types == ["STOP_MARKET", "TAKE_PROFIT_MARKET"], [
        r.summary() for r in reports
    ]
    position = Position.objects.get(pk=stranded_closing.pk)
    if not held:
        assert position.status == Position.Status.CLOSED
        assert open_algo_orders(btc_market, "BTCUSDT") == []
    if stranded_closing.status == Position.Status.CLOSING:
        assert TradeEvent.objects.filter(position=position, message__contains="CLOSING -> OPEN")
        assert Alert.objects.filter(key="guard.close_incomplete.BTCUSDT").exists()
    assert reconcile(repair=False, gateway=fast_gateway()).ok


def test_reconcile_when_closing_record_and_position_still_held_then_not_agree(
    stranded_closing, btc_market
):
    # Arrange: the faults stop; nothing has repaired the record yet
    btc_market.clear_faults()
    Position.objects.filter(pk=stranded_closing.pk).update(status=Position.Status.CLOSING)

    # Act: past the grace for a close in flight
    report = reconcile(
        repair=True, gateway=fast_gateway(), now=timezone.now() + timedelta(minutes=2)
    )

    # Assert: reported for what it is, never "agree"
    kinds = [d.kind for d in report.unresolved]
    assert STATUS_CONTRADICTED in kinds and kinds.count(EXIT_MISSING) == 2
    assert not report.ok
