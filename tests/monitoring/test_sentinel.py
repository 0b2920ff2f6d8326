"""The sentinel: every enabled symbol and open position checked; problems become alerts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from core.models import Heartbeat
from exchange.retry import RetryPolicy
from monitoring.models import Alert
from monitoring.sentinel import sentinel_pass
from tests.support.exchange import cancel_exit, fast_gateway
from tests.support.factories import open_long
from trading.gateway import exchange_gateway
from trading.models import Position, Symbol, TradingSwitch

pytestmark = pytest.mark.django_db(transaction=True)


def _fresh_guard_heartbeat() -> None:
    now = timezone.now()
    Heartbeat.objects.create(
        process="guard", started_at=now, finished_at=now, duration_ms=5, requests=3, weight=5
    )


@pytest.fixture
def btc_long(paper, defaults) -> Position:
    paper.set_price("BTCUSDT", "100000")
    paper.set_balance("USDT", "1833.33")
    gateway = fast_gateway()
    return open_long(symbol=Symbol.objects.get(name="BTCUSDT"), gateway=gateway)


def test_sentinel_pass_when_all_is_well_then_no_findings(btc_long):
    # Arrange
    _fresh_guard_heartbeat()

    # Act
    report = sentinel_pass(gateway=fast_gateway())

    # Assert
    assert report.findings == []
    assert report.positions == 1 and report.symbols == 2


def test_sentinel_pass_when_stop_missing_and_guard_stale_then_alerted_once(btc_long):
    # Arrange
    cancel_exit(position=btc_long, kind="SL", gateway=fast_gateway())
    old = timezone.now() - timedelta(minutes=5)
    Heartbeat.objects.create(
        process="guard", started_at=old, finished_at=old, duration_ms=5, requests=3, weight=5
    )
    Position.objects.filter(pk=btc_long.pk).update(opened_at=old)
    btc_long.orders.update(created_at=old)

    # Act
    first = sentinel_pass(gateway=fast_gateway())
    second = sentinel_pass(gateway=fast_gateway())

    # Assert
    keys = {f.key for f in first.findings}
    assert keys == {"sentinel.guard_stale", "sentinel.exit_missing.BTCUSDT.SL"}
    assert first.alerts_raised == 2 and second.alerts_raised == 0
    assert Alert.objects.filter(key__startswith="sentinel.").count() == 2


def test_sentinel_pass_when_pnl_drifts_and_trading_halted_then_both_reported(btc_long):
    # Arrange
    _fresh_guard_heartbeat()
    Position.objects.filter(pk=btc_long.pk).update(entry_price=Decimal("99000"))
    TradingSwitch.objects.filter(id=1).update(enabled=False, reason="test")

    # Act
    report = sentinel_pass(gateway=fast_gateway())

    # Assert
    keys = {f.key for f in report.findings}
    assert keys == {"sentinel.pnl_drift.BTCUSDT", "sentinel.halted_with_positions"}


def test_sentinel_pass_when_exchange_unreachable_then_critical_alert(defaults, settings):
    # Arrange: nothing listens on port 9
    _fresh_guard_heartbeat()
    settings.EXCHANGE, settings.PAPER_EXCHANGE_URL = "paper", "http://127.0.0.1:9"
    gateway = exchange_gateway(retry_policy=RetryPolicy(max_total_seconds=0, sleep=lambda s: 0))

    # Act
    report = sentinel_pass(gateway=gateway)

    # Assert
    assert [f.key for f in report.findings] == ["sentinel.exchange_unreachable"]
    assert Alert.objects.get(key="sentinel.exchange_unreachable").severity == "critical"


def test_sentinel_command_when_once_then_prints_summary(paper, defaults, capsys):
    # Act
    call_command("sentinel", "--once")

    # Assert
    assert "sentinel: 2 symbol(s)" in capsys.readouterr().out


def test_guard_command_when_once_then_prints_summary(paper, defaults, capsys):
    # Act
    call_command("guard", "--once")

    # Assert
    assert "guard: 0 position(s) | 3 request(s)" in capsys.readouterr().out


def test_sentinel_pass_when_first_ever_beside_guard_first_pass_then_no_stale_alert_until_next(
    paper, defaults
):
    # Arrange: a fresh installation; neither the guard nor the sentinel has completed a pass.

    # Act
    first = sentinel_pass(gateway=fast_gateway())
    second = sentinel_pass(gateway=fast_gateway())

    # Assert
    assert "sentinel.guard_stale" not in {f.key for f in first.findings}
    assert "sentinel.guard_stale" in {f.key for f in second.findings}


def test_sentinel_pass_when_weight_budget_spent_then_rate_limit_warning_not_unreachable(
    paper, defaults, settings, time_machine
):
    # Arrange: this minute's weight already at the budget (one read reports it), at the start
    # of a fresh minute so the test cannot straddle the exchange's one-minute window.
    next_minute = (int(time.time()) // 60 + 1) * 60
    time_machine.move_to(datetime.fromtimestamp(next_minute + 1, tz=UTC), tick=True)
    _fresh_guard_heartbeat()
    settings.EXCHANGE_WEIGHT_BUDGET_1M = 1
    gateway = fast_gateway()
    gateway.fetch_positions()

    # Act
    report = sentinel_pass(gateway=gateway)

    # Assert
    assert [f.key for f in report.findings] == ["sentinel.exchange_rate_limited"]
    assert Alert.objects.get(key="sentinel.exchange_rate_limited").severity == "warning"


def test_sentinel_pass_when_closing_record_and_position_still_held_then_contradiction_reported(
    btc_long,
):
    # Arrange: recorded CLOSING (a close that never went through); the exchange still holds it
    Position.objects.filter(pk=btc_long.pk).update(status=Position.Status.CLOSING)

    # Act: two minutes later, past the grace for a close in flight
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        _fresh_guard_heartbeat()
        report = sentinel_pass(gateway=fast_gateway())

    # Assert
    keys = {f.key for f in report.findings}
    assert keys == {"sentinel.status_contradicted.BTCUSDT"}


def test_sentinel_pass_when_position_flipped_by_hand_then_old_side_exits_do_not_count(
    btc_long,
):
    # Arrange: flipped by hand to a SHORT; our SELL exits remain and close nothing
    fast_gateway().create_market_order(
        symbol="BTCUSDT",
        side="SELL",
        quantity=Decimal("0.022"),
        client_order_id="by-hand-flip",
        reduce_only=False,
    )
    _fresh_guard_heartbeat()

    # Act
    report = sentinel_pass(gateway=fast_gateway())

    # Assert: the SHORT has no BUY exits; the record contradicts the exchange
    keys = {f.key for f in report.findings}
    assert {
        "sentinel.exit_missing.BTCUSDT.SL",
        "sentinel.exit_missing.BTCUSDT.TP",
        "sentinel.position_mismatch.BTCUSDT",
    } <= keys
