"""Positions opened by hand and orders left without a position."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.models import MonitoringSettings
from monitoring.models import Alert
from tests.support.exchange import open_algo_orders
from trading.models import Position

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hand_opened(btc_market, unthrottled_gateway) -> None:
    """0.002 BTC bought by hand on the exchange: no record here."""
    unthrottled_gateway.create_market_order(
        symbol="BTCUSDT",
        side="BUY",
        quantity=Decimal("0.002"),
        client_order_id="by-hand-1",
        reduce_only=False,
    )


def test_guard_pass_when_unknown_position_and_policy_report_then_alerted_once(hand_opened, guard):
    # Arrange
    MonitoringSettings.objects.update_or_create(
        id=1, defaults={"unknown_position_policy": "report"}
    )

    # Act
    reports = [guard() for _ in range(3)]

    # Assert
    assert reports[0].unknown == ["BTCUSDT LONG 0.002 @ 100000"]
    assert Alert.objects.filter(key="guard.unknown_position.BTCUSDT").count() == 1
    assert not Position.objects.exists()


def test_guard_pass_when_unknown_position_and_default_policy_then_protected_in_same_pass(
    hand_opened, btc_market, guard
):
    # Arrange: the shipped rule, untouched
    assert MonitoringSettings.load().unknown_position_policy == "adopt"

    # Act
    first = guard()
    second = guard()

    # Assert
    position = Position.objects.get()
    assert first.adopted and position.adopted and position.status == "OPEN"
    assert sorted(first.reattached) == ["BTCUSDT SL @ 99700.0", "BTCUSDT TP @ 100500.0"]
    assert not second.reattached and not second.adopted
    types = sorted(o["orderType"] for o in open_algo_orders(btc_market, "BTCUSDT"))
    assert types == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert "protecting it" in Alert.objects.get(key="guard.adopted.BTCUSDT").message


def test_guard_pass_when_position_flipped_by_hand_then_old_side_exits_do_not_count(
    btc_market, unthrottled_gateway, guard
):
    # Arrange: our LONG with its SELL exits; by hand, 0.022 sold: the exchange holds a SHORT
    from tests.support.factories import open_long
    from trading.models import Symbol

    position = open_long(symbol=Symbol.objects.get(name="BTCUSDT"), gateway=unthrottled_gateway)
    unthrottled_gateway.create_market_order(
        symbol="BTCUSDT",
        side="SELL",
        quantity=Decimal("0.022"),
        client_order_id="by-hand-flip",
        reduce_only=False,
    )

    # Act
    report = guard()
    after = guard()

    # Assert: BUY exits priced from the SHORT's entry (100000: SL 100300, TP 99500) now close it;
    # once they are in place, the old SELL exits are cancelled
    buys = sorted(
        (o["orderType"], Decimal(o["triggerPrice"]))
        for o in open_algo_orders(btc_market, "BTCUSDT")
        if o["side"] == "BUY"
    )
    assert buys == [("STOP_MARKET", Decimal("100300")), ("TAKE_PROFIT_MARKET", Decimal("99500"))]
    assert sorted(report.reattached) == ["BTCUSDT SL @ 100300.0", "BTCUSDT TP @ 99500.0"]
    assert len(after.cancelled) == 2 and not after.reattached
    assert {o["side"] for o in open_algo_orders(btc_market, "BTCUSDT")} == {"BUY"}
    assert (
        Position.objects.get(pk=position.pk).side == "LONG"
    )  # the record is reported, not rewritten


def test_guard_pass_when_unknown_position_and_policy_close_then_closed(
    hand_opened, btc_market, guard
):
    # Arrange
    MonitoringSettings.objects.update_or_create(id=1, defaults={"unknown_position_policy": "close"})

    # Act
    guard()

    # Assert
    position = Position.objects.get()
    assert position.status == "CLOSED" and position.close_reason == "RISK"
    assert btc_market.positions() == []


def test_guard_pass_when_our_order_has_no_position_then_cancelled(
    btc_market, unthrottled_gateway, guard
):
    # Arrange: a stop of ours left behind in a symbol with no position (what a position closed
    # under exit_on_flat "keep" leaves; placed directly, Binance would answer -4509)
    btc_market.set_options(close_without_position="accept")
    unthrottled_gateway.create_exit_order(
        symbol="BNBUSDT",
        side="SELL",
        kind="SL",
        stop_price=Decimal("900"),
        client_order_id="arena-999-sl-x",
    )

    # Act
    report = guard()

    # Assert
    assert report.cancelled == ["arena-999-sl-x"]
    assert open_algo_orders(btc_market, "BNBUSDT") == []
