"""The guard pass: closes recorded from the exchange, fixed cost per pass, hidden orders,
alerts that never wait on Telegram, passes that never pile up."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest

from core.models import Heartbeat, Lease
from core.services import lease_claim
from monitoring.models import Alert
from monitoring.tasks import alert_deliver_task
from risk.models import RiskProfile
from tests.support.exchange import cancel_exit, open_algo_orders, pass_cost
from tests.support.factories import open_long, open_on_every_symbol
from trading.guard import guard_book_load
from trading.models import Position, Symbol

pytestmark = pytest.mark.django_db(transaction=True)


def _requests(paper: object) -> int:
    return sum(paper.stats()["requests"].values())


def test_guard_pass_when_price_moves_through_stop_then_close_recorded_and_tp_cancelled(
    btc_market, btc, unthrottled_gateway, guard, caplog
):
    # Arrange
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    btc_market.set_price("BTCUSDT", "99700")

    # Act
    with caplog.at_level(logging.INFO):
        report = guard()

    # Assert
    position.refresh_from_db()
    fills = unthrottled_gateway.fetch_fills(symbol="BTCUSDT", since=None)
    exchange_pnl = sum(f.realized_pnl for f in fills) - sum(f.commission for f in fills)
    assert position.status == Position.Status.CLOSED
    assert position.close_reason == Position.CloseReason.STOP_LOSS
    assert position.exit_price == Decimal("99700")
    assert position.realized_pnl == exchange_pnl
    assert sum(f.realized_pnl for f in fills) == Decimal("-3.3")
    assert f"[Close] BTCUSDT SL @ 99700.0 | PnL {exchange_pnl:.2f} USDT" in caplog.text
    assert report.closed and report.closed[0].startswith("BTCUSDT SL @ 99700")
    assert open_algo_orders(btc_market, "BTCUSDT") == []


def test_guard_pass_when_stop_seen_firing_by_an_earlier_pass_then_close_recorded_as_sl(
    btc_market, btc, unthrottled_gateway, guard
):
    # Arrange: an earlier pass saw the stop fire while the position was still closing.
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    btc_market.set_price("BTCUSDT", "99700")
    position.orders.filter(purpose="SL").update(status="TRIGGERED")

    # Act
    guard()

    # Assert
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED
    assert position.close_reason == Position.CloseReason.STOP_LOSS


def test_guard_pass_when_one_or_six_positions_then_one_read_per_watched_symbol_and_flat_queries(
    paper, defaults, unthrottled_gateway, guard
):
    # Arrange
    one = open_on_every_symbol(gateway=unthrottled_gateway, count=1)
    guard()  # the first pass sweeps every symbol and reads the balance: not the steady state
    one_cost = pass_cost(paper, guard)
    weight_one, requests_one = one_cost.weight, one_cost.requests
    # Add five more positions (the paper exchange lists six symbols).
    for symbol in Symbol.objects.exclude(pk=one[0].symbol_id).order_by("id"):
        open_long(symbol=symbol, gateway=unthrottled_gateway)
    guard()
    six_cost = pass_cost(paper, guard)
    weight_six, requests_six, report = six_cost.weight, six_cost.requests, six_cost.report

    # Assert: the positions (weight 5) and each watched symbol's conditional orders (weight 1);
    # no all-symbol order read (40), no regular order read, no balance read
    assert report.positions == 6 and report.reattached == [] and report.error == ""
    assert (requests_one, requests_six) == (1 + 1, 1 + 6)
    assert report.requests == 7
    assert (weight_one, weight_six) == (5 + 1, 5 + 6)
    assert six_cost.queries == one_cost.queries


@pytest.mark.parametrize("count", [1, 30])
def test_guard_book_load_when_1_or_30_positions_then_five_queries(
    defaults, django_assert_num_queries, count
):
    # Arrange: 30 symbols with an open position each (database only)
    template = Symbol.objects.get(name="BTCUSDT")
    for n in range(count):
        template.pk, template.name, template.base_asset = None, f"T{n}USDT", f"T{n}"
        template.save()
        Position.objects.create(
            symbol=template,
            side="LONG",
            status="OPEN",
            quantity=Decimal("1"),
            entry_price=Decimal("10"),
            leverage=2,
            margin_type="ISOLATED",
        )

    # Act / Assert
    with django_assert_num_queries(5):
        book = guard_book_load()
    assert len(book.positions) == count
    assert all(p.symbol.name for p in book.positions)


def test_guard_pass_when_new_stop_hidden_from_open_orders_then_no_second_stop(
    btc_market, btc, unthrottled_gateway, guard
):
    # Arrange: the exchange hides new conditional orders from open-order queries for 60 s
    btc_market.faults(kind="algo_hidden", seconds=60)
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    accepted = btc_market.stats()["orders_accepted"]
    assert open_algo_orders(btc_market, "BTCUSDT")  # the control API sees hidden ones too
    assert unthrottled_gateway.fetch_open_conditional_orders() == []

    # Act
    reports = [guard() for _ in range(3)]

    # Assert
    assert all(r.reattached == [] and r.error == "" for r in reports)
    assert btc_market.stats()["orders_accepted"] == accepted
    assert btc_market.stats()["requests"].get("GET /fapi/v1/algoOrder", 0) >= 2
    assert position.orders.filter(purpose__in=["SL", "TP"]).count() == 2


def test_guard_pass_when_telegram_hangs_then_pass_returns_at_once_and_alert_sent_later(
    btc_market, btc, unthrottled_gateway, guard, telegram, celery_memory_broker
):
    # Arrange: an alert-raising situation (a stop the exchange refuses), Telegram not answering
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    Symbol.objects.filter(pk=btc.pk).update(tick_size=Decimal("0.0001"), price_precision=4)
    Position.objects.filter(pk=position.pk).update(stop_loss_price=Decimal("99700.0997"))
    cancel_exit(position=position, kind="SL", gateway=unthrottled_gateway)
    telegram.hang = True

    # Act: the pass stores the alert and queues its delivery for a worker
    started = time.monotonic()
    report = guard()
    elapsed = time.monotonic() - started
    requests_during_pass = telegram.requests
    alert = Alert.objects.get(key="guard.exit_failed.BTCUSDT.SL")
    pending = alert.delivery
    telegram.release()
    alert_deliver_task.apply(args=[alert.id])  # what the worker does with the queued task

    # Assert
    assert report.failed and "-1111" in report.failed[0]
    assert elapsed < 2
    assert requests_during_pass == 0
    assert pending == Alert.Delivery.PENDING
    alert.refresh_from_db()
    assert alert.delivery == Alert.Delivery.SENT
    assert [m["text"] for m in telegram.messages] == [f"arena CRITICAL BTCUSDT: {alert.message}"]


def test_guard_pass_when_previous_pass_holds_lease_then_skipped_and_counted(paper, defaults, guard):
    # Arrange
    assert lease_claim(name="guard", owner="still-running", seconds=60)

    # Act
    reports = [guard() for _ in range(3)]

    # Assert
    assert all(r.skipped for r in reports)
    assert Lease.objects.get(name="guard").skipped_passes == 3
    assert not Heartbeat.objects.filter(process="guard").exists()


def test_guard_pass_when_it_runs_then_heartbeat_records_requests_and_weight(paper, defaults, guard):
    # Act
    report = guard()

    # Assert
    beat = Heartbeat.objects.get(process="guard")
    assert beat.ok and beat.requests == report.requests == 3
    assert beat.weight > 0
    assert Lease.objects.get(name="guard").owner == ""


def test_guard_pass_when_margin_exceeds_rules_then_post_trade_check_closes_the_excess(
    btc_market, btc, unthrottled_gateway, guard
):
    # Arrange: 0.011 BTC opened under a 600 USDT margin cap, then the cap is cut to 300
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    RiskProfile.objects.filter(is_active=True).update(max_risk_usd=Decimal("300"))

    # Act
    report = guard()

    # Assert
    position.refresh_from_db()
    assert report.error == ""
    assert position.status == Position.Status.OPEN
    assert position.quantity == Decimal("0.006")
