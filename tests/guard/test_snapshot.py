"""Case 11 of issue 11: the guard acts on one consistent picture of the exchange. A stop that
fires while the pass reads never makes it place an exit on the flat symbol, and an entry that
lands while it reads never makes it raise an alert."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from monitoring.models import Alert
from tests.support.exchange import fast_gateway, open_algo_orders
from tests.support.factories import open_long
from trading.guard import GuardReport, guard_pass
from trading.models import Order, Position, Symbol
from trading.services import position_open

pytestmark = pytest.mark.django_db(transaction=True)


def _guard_in_thread() -> tuple[threading.Thread, list[GuardReport]]:
    reports: list[GuardReport] = []

    def run() -> None:
        try:
            reports.append(guard_pass(gateway=fast_gateway()))
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="guard-pass")
    thread.start()
    return thread, reports


def _wait_until(condition: Callable[[], bool], *, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _fault_taken(market) -> bool:
    return market._call("GET", "faults")["faults"] == []


@pytest.mark.parametrize(
    "slow_read", ["/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders", "/fapi/v2/positionRisk"]
)
def test_guard_pass_when_stop_fires_during_its_reads_then_nothing_placed_and_close_recorded(
    btc_market, btc, unthrottled_gateway, slow_read
):
    # Arrange: a protected LONG (SL 99700); one of the pass's three reads is slow
    position = open_long(symbol=btc, gateway=unthrottled_gateway)
    btc_market.faults(kind="latency", method="GET", path=slow_read, count=1, seconds=1.0)

    # Act: the stop fires while that read is held back
    thread, reports = _guard_in_thread()
    _wait_until(lambda: _fault_taken(btc_market))
    btc_market.set_price("BTCUSDT", "99600")
    thread.join(timeout=30)
    later = guard_pass(gateway=fast_gateway())

    # Assert: no exit placed for the flat symbol, no alert, the close recorded as SL
    assert btc_market.positions() == []
    assert Order.objects.filter(purpose__in=["SL", "TP"]).count() == 2, reports[0].summary()
    assert not reports[0].reattached and not later.reattached
    assert open_algo_orders(btc_market, "BTCUSDT") == []
    assert not Alert.objects.filter(key__startswith="guard.").exists()
    position.refresh_from_db()
    assert position.status == Position.Status.CLOSED and position.close_reason == "SL"


def test_guard_pass_when_entry_lands_during_its_reads_then_no_alert_and_no_second_exit(
    btc_market, btc
):
    # Arrange: the pass's position read is answered 1.5 s after the exchange read it (flat)
    btc_market.faults(
        kind="timeout", method="GET", path="/fapi/v2/positionRisk", count=1, seconds=1.5
    )
    thread, reports = _guard_in_thread()
    _wait_until(lambda: _fault_taken(btc_market))

    # Act: an entry fills and is protected while the pass still waits for that answer
    outcome = position_open(
        symbol=Symbol.objects.get(name="BTCUSDT"),
        side="LONG",
        reason="test",
        gateway=fast_gateway(),
    )
    thread.join(timeout=30)
    later = [guard_pass(gateway=fast_gateway()) for _ in range(2)]

    # Assert: the record younger than the snapshot is left alone; then it is seen protected
    assert outcome.ok, outcome
    assert reports[0].error == "" and not reports[0].closed and not reports[0].reattached
    assert all(not r.reattached and not r.failed and not r.closed for r in later)
    assert not Alert.objects.filter(key__startswith="guard.").exists()
    types = sorted(o["orderType"] for o in open_algo_orders(btc_market, "BTCUSDT"))
    assert types == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert Position.objects.get(pk=outcome.position.pk).status == Position.Status.OPEN
    assert [Decimal(r["positionAmt"]) for r in btc_market.positions()] == [Decimal("0.011")]
