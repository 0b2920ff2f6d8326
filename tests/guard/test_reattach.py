"""The guard re-attaches a missing stop once and is quiet afterwards; a refused re-attach is
recomputed and retried every pass, and a position it cannot protect within three passes is
closed, with an alert: it never gives up and leaves a position naked."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from monitoring.models import Alert
from tests.support.exchange import cancel_exit, open_algo_orders
from tests.support.factories import open_long
from tests.support.logs import app_log_lines
from trading.models import ExchangeRequest, Order, Position, Symbol, SymbolLock

pytestmark = pytest.mark.django_db(transaction=True)


def test_guard_pass_when_stop_loss_deleted_by_hand_then_one_reattached_and_quiet_after(
    btc_market, btc, unthrottled_gateway, guard, caplog
):
    # Arrange
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    cancel_exit(position=position, kind="SL", gateway=unthrottled_gateway)
    accepted = btc_market.stats()["orders_accepted"]

    # Act
    with caplog.at_level(logging.INFO):
        first = guard()
    first_lines = app_log_lines(caplog)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        later = [guard() for _ in range(10)]

    # Assert
    assert first.reattached == ["BTCUSDT SL @ 99700.0"]
    assert btc_market.stats()["orders_accepted"] == accepted + 1
    stops = [o for o in open_algo_orders(btc_market, "BTCUSDT") if o["orderType"] == "STOP_MARKET"]
    assert [(Decimal(s["triggerPrice"]), s["side"]) for s in stops] == [(Decimal("99700"), "SELL")]
    assert any("stop-loss missing" in line for line in first_lines)
    assert any("placed @ 99700.0" in line for line in first_lines)
    assert all(not r.reattached and not r.error for r in later)
    assert app_log_lines(caplog) == []
    assert position.orders.filter(purpose="SL", status=Order.Status.OPEN).count() == 1


def test_guard_pass_when_stop_rejected_for_precision_then_recomputed_and_placed_next_pass(
    btc_market, btc, unthrottled_gateway, guard
):
    # Arrange: a wrong tick in the database priced the stop with too many decimals
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    Symbol.objects.filter(pk=btc.pk).update(tick_size=Decimal("0.0001"), price_precision=4)
    Position.objects.filter(pk=position.pk).update(stop_loss_price=Decimal("99700.0997"))
    cancel_exit(position=position, kind="SL", gateway=unthrottled_gateway)

    # Act
    first = guard()
    alerts_while_naked = list(Alert.objects.values_list("key", flat=True))
    second = guard()
    later = [guard() for _ in range(3)]

    # Assert: refused once, then priced again from the rules (entry 100000, SL 0.3 %) and placed
    assert first.failed and "-1111" in first.failed[0]
    assert "guard.exit_failed.BTCUSDT.SL" in alerts_while_naked
    assert second.reattached == ["BTCUSDT SL @ 99700.0000"]
    assert all(not r.reattached and not r.failed for r in later)
    stops = [o for o in open_algo_orders(btc_market, "BTCUSDT") if o["orderType"] == "STOP_MARKET"]
    assert [Decimal(s["triggerPrice"]) for s in stops] == [Decimal("99700")]
    assert btc_market.stats()["rejections"].get("-1111") == 1
    assert Position.objects.get(pk=position.pk).status == Position.Status.OPEN


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (-4014, "Price not increased by tick size."),
        (
            -4130,
            "An open stop or take profit order with GTE and closePosition in the direction is "
            "existing.",
        ),
    ],
)
def test_guard_pass_when_reattach_refused_three_passes_then_position_closed_and_alerted(
    btc_market, btc, unthrottled_gateway, guard, code, msg
):
    # Arrange: the exchange refuses every stop for this symbol (a hand-moved stop, a tick change)
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    cancel_exit(position=position, kind="SL", gateway=unthrottled_gateway)
    btc_market.faults(
        kind="error",
        method="POST",
        path="/fapi/v1/algoOrder",
        count=50,
        status=400,
        code=code,
        msg=msg,
    )

    # Act
    reports = [guard() for _ in range(3)]
    btc_market.clear_faults()
    after = guard()

    # Assert: retried each pass (never given up on), then closed at market; flat, no order left
    assert [bool(r.failed) for r in reports[:2]] == [True, True]
    assert reports[2].closed, reports[2].summary()
    assert not btc_market.positions()
    assert open_algo_orders(btc_market, "BTCUSDT") == []
    refused = ExchangeRequest.objects.filter(action="create_exit_order", error_code=code)
    assert refused.count() == 3
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED
    alert = Alert.objects.get(key="guard.unprotectable.BTCUSDT")
    assert "closed at market" in alert.message
    assert not after.reattached and not after.failed and not after.error


def test_guard_pass_when_stop_crossed_and_symbol_locked_then_flattened_without_waiting(
    btc_market, btc, unthrottled_gateway, guard
):
    # Arrange: the stop is gone, the mark is already through it, and a cycle holds the lock
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    cancel_exit(position=position, kind="SL", gateway=unthrottled_gateway)
    btc_market.set_price("BTCUSDT", "99650")
    SymbolLock.objects.filter(symbol=btc).update(
        owner="another-worker", expires_at=timezone.now() + timedelta(seconds=120)
    )

    # Act
    started = time.monotonic()
    report = guard()
    elapsed = time.monotonic() - started
    SymbolLock.objects.filter(symbol=btc).update(owner="", expires_at=None)
    after = guard()

    # Assert: flat at once, not after the lock; then recorded as a risk close, with an alert
    assert elapsed < 5, elapsed
    assert report.closed, report.summary()
    assert btc_market.positions() == []
    assert "closed at market" in Alert.objects.get(key="guard.unprotectable.BTCUSDT").message
    assert after.closed, after.summary()
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == "RISK"
