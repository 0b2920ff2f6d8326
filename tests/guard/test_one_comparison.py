"""The guard, the sentinel, reconcile and the dashboard judge protection the same way, from
what the exchange holds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from dashboard.selectors import open_positions_with_marks
from monitoring.sentinel import sentinel_pass
from tests.support.exchange import cancel_exit, fast_gateway
from tests.support.factories import open_long
from trading.comparison import SETTLE_GRACE
from trading.exchange_view import exchange_view_store
from trading.guard import exchange_snapshot
from trading.models import Symbol
from trading.reconcile import EXIT_MISSING, reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def _views_of_the_stop(market) -> dict[str, bool]:
    """Whether each watcher sees the BTCUSDT stop-loss as missing."""
    findings = {f.key for f in sentinel_pass(gateway=fast_gateway()).findings}
    differences = reconcile(repair=False, gateway=fast_gateway()).differences
    rows = {r.symbol: r for r in open_positions_with_marks().rows}
    return {
        "sentinel": "sentinel.exit_missing.BTCUSDT.SL" in findings,
        "reconcile": any(
            d.kind == EXIT_MISSING and "stop-loss" in d.detail and d.symbol == "BTCUSDT"
            for d in differences
        ),
        "dashboard": not rows["BTCUSDT"].stop_on_exchange,
    }


def test_watchers_when_stop_cancelled_then_all_say_missing_once_the_grace_is_over(
    btc_market, guard, time_machine
) -> None:
    # Arrange: a protected long; the guard's read feeds the dashboard
    position = open_long(symbol=Symbol.objects.get(name="BTCUSDT"), gateway=fast_gateway())
    cancel_exit(position=position, kind="SL", gateway=fast_gateway())
    snapshot = exchange_snapshot(gateway=fast_gateway())
    exchange_view_store(
        positions=snapshot.positions.values(), orders=snapshot.orders, taken_at=snapshot.taken_at
    )

    # Act: within the grace our own stop row may still be hidden from the lists (the watchers
    # that alert wait); the dashboard shows what the exchange holds
    within = _views_of_the_stop(btc_market)
    time_machine.move_to(timezone.now() + SETTLE_GRACE + timedelta(seconds=1), tick=True)
    after = _views_of_the_stop(btc_market)

    # Assert
    assert within == {"sentinel": False, "reconcile": False, "dashboard": True}
    assert after == {"sentinel": True, "reconcile": True, "dashboard": True}


def test_watchers_when_position_flipped_by_hand_then_old_side_exits_count_nowhere(
    btc_market, guard, time_machine
) -> None:
    # Arrange: our SELL exits stay, the exchange now holds a SHORT they cannot close
    open_long(symbol=Symbol.objects.get(name="BTCUSDT"), gateway=fast_gateway())
    fast_gateway().create_market_order(
        symbol="BTCUSDT",
        side="SELL",
        quantity=Decimal("0.022"),
        client_order_id="by-hand-flip",
        reduce_only=False,
    )
    snapshot = exchange_snapshot(gateway=fast_gateway())
    exchange_view_store(
        positions=snapshot.positions.values(), orders=snapshot.orders, taken_at=snapshot.taken_at
    )
    assert [o.side for o in snapshot.orders["BTCUSDT"]].count("SELL") == 2

    # Act: past the grace for our own exits
    time_machine.move_to(timezone.now() + SETTLE_GRACE + timedelta(seconds=1), tick=True)
    seen = _views_of_the_stop(btc_market)

    # Assert
    assert seen == {"sentinel": True, "reconcile": True, "dashboard": True}
