"""The guard re-attaches a missing stop once, is quiet afterwards, and gives up on rejections
that retrying cannot fix until the rules change."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from monitoring.models import Alert, ProtectionState
from monitoring.services import protection_clear
from risk.services import rule_save
from tests.guard.conftest import app_log_lines, cancel_exit, open_algo_orders, open_long
from trading.models import Order, Position, Symbol

pytestmark = pytest.mark.django_db(transaction=True)


def test_guard_pass_when_stop_loss_deleted_by_hand_then_one_reattached_and_quiet_after(
    market, btc, gateway, guard, caplog
):
    # Arrange
    position = open_long(symbol=btc, gateway=gateway)
    cancel_exit(position=position, kind="SL", gateway=gateway)
    accepted = market.stats()["orders_accepted"]

    # Act
    with caplog.at_level(logging.INFO):
        first = guard()
    first_lines = app_log_lines(caplog)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        later = [guard() for _ in range(10)]

    # Assert
    assert first.reattached == ["BTCUSDT SL @ 99700.0"]
    assert market.stats()["orders_accepted"] == accepted + 1
    stops = [o for o in open_algo_orders(market, "BTCUSDT") if o["orderType"] == "STOP_MARKET"]
    assert [(Decimal(s["triggerPrice"]), s["side"]) for s in stops] == [(Decimal("99700"), "SELL")]
    assert any("stop-loss missing" in line for line in first_lines)
    assert any("re-attached @ 99700.0" in line for line in first_lines)
    assert all(not r.reattached and not r.error for r in later)
    assert app_log_lines(caplog) == []
    assert position.orders.filter(purpose="SL", status=Order.Status.OPEN).count() == 1


def test_guard_pass_when_stop_rejected_for_precision_then_tried_once_until_rules_change(
    market, btc, gateway, guard, caplog
):
    # Arrange: a wrong tick in the database priced the stop with too many decimals
    position = open_long(symbol=btc, gateway=gateway)
    Symbol.objects.filter(pk=btc.pk).update(tick_size=Decimal("0.0001"), price_precision=4)
    Position.objects.filter(pk=position.pk).update(stop_loss_price=Decimal("99700.0997"))
    cancel_exit(position=position, kind="SL", gateway=gateway)
    accepted = market.stats()["orders_accepted"]

    # Act
    with caplog.at_level(logging.INFO):
        first = guard()
    caplog.clear()
    with caplog.at_level(logging.DEBUG), time_machine.travel(timezone.now()) as clock:
        for _ in range(10):
            clock.shift(timedelta(minutes=1))
            guard()
    quiet_lines = app_log_lines(caplog)
    stats_while_given_up = market.stats()
    state_while_given_up = ProtectionState.objects.get(symbol=btc, kind="SL")
    fixed = Symbol.objects.get(pk=btc.pk)
    fixed.tick_size, fixed.price_precision = Decimal("0.10"), 2
    rule_save(instance=fixed, actor="trader")
    after_fix = guard()

    # Assert
    assert first.gave_up == ["BTCUSDT LONG stop-loss"]
    assert stats_while_given_up["rejections"].get("-1111") == 1
    assert stats_while_given_up["orders_accepted"] == accepted
    assert quiet_lines == []
    assert state_while_given_up.error_code == -1111
    assert state_while_given_up.attempts == 1
    alert = Alert.objects.get(key="guard.gave_up.BTCUSDT.SL")
    assert "-1111" in alert.message
    assert after_fix.reattached == ["BTCUSDT SL @ 99700.1"]
    assert market.stats()["rejections"].get("-1111") == 1
    assert ProtectionState.objects.get(symbol=btc, kind="SL").gave_up_at is None


def test_guard_pass_when_operator_clears_give_up_then_tried_again_once(market, btc, gateway, guard):
    # Arrange: given up on a stop the exchange refuses; the rules stay as they are
    position = open_long(symbol=btc, gateway=gateway)
    Symbol.objects.filter(pk=btc.pk).update(tick_size=Decimal("0.0001"), price_precision=4)
    Position.objects.filter(pk=position.pk).update(stop_loss_price=Decimal("99700.0997"))
    cancel_exit(position=position, kind="SL", gateway=gateway)
    guard()
    assert guard().gave_up == []
    state = ProtectionState.objects.get(symbol=btc, kind="SL")

    # Act
    protection_clear(state_ids=[state.pk], actor="trader")
    retried = guard()
    after = [guard() for _ in range(3)]

    # Assert
    assert retried.gave_up == ["BTCUSDT LONG stop-loss"]
    assert all(r.gave_up == [] for r in after)
    assert market.stats()["rejections"].get("-1111") == 2
