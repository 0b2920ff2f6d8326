"""The dashboard page, equity snapshots, and the "Close everything" button (Django test client)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.admin_actions import EmergencyCloseActionMixin
from dashboard.models import EquitySnapshot
from dashboard.selectors import equity_chart
from dashboard.services import equity_snapshot_record, equity_snapshots_prune
from tests.support.exchange import fast_gateway
from trading.guard import guard_pass
from trading.models import Position, TradingSwitch


@pytest.fixture
def operator_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("operator", "op@example.com", "pw"))
    return client


@pytest.fixture
def staff_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_user("viewer", password="pw", is_staff=True))
    return client


def _snapshot(minutes_ago: int, equity: str) -> EquitySnapshot:
    return EquitySnapshot.objects.create(
        time=timezone.now() - timedelta(minutes=minutes_ago),
        equity=Decimal(equity),
        wallet=Decimal(equity),
        unrealized_pnl=Decimal(0),
    )


def test_equity_snapshot_record_when_exchange_answers_then_one_balance_request_stored(
    funded_market,
) -> None:
    before = funded_market.stats()["requests"]

    snapshot = equity_snapshot_record()

    after = funded_market.stats()["requests"]
    sent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert sum(sent.values()) == 1
    assert snapshot.wallet == Decimal("10000")
    assert snapshot.equity == Decimal("10000")
    assert snapshot.unrealized_pnl == Decimal(0)


def test_equity_snapshots_prune_when_above_bound_then_newest_kept(db: None) -> None:
    for minutes_ago in range(5):
        _snapshot(minutes_ago, f"{1000 + minutes_ago}")

    deleted = equity_snapshots_prune(keep=3)

    assert deleted == 2
    assert sorted(EquitySnapshot.objects.values_list("equity", flat=True)) == [
        Decimal("1000"),
        Decimal("1001"),
        Decimal("1002"),
    ]


def test_equity_chart_when_snapshots_then_path_spans_plot_with_high_at_top() -> None:
    now = timezone.now()
    snapshots = [
        EquitySnapshot(time=now - timedelta(minutes=2), equity=Decimal("100")),
        EquitySnapshot(time=now - timedelta(minutes=1), equity=Decimal("110")),
        EquitySnapshot(time=now, equity=Decimal("105")),
    ]

    chart = equity_chart(snapshots=snapshots, width=200, height=100)

    points = [tuple(map(float, p.split(","))) for p in chart.path[1:].split(" L")]
    assert len(points) == 3
    assert points[0][0] == chart.plot_left and points[-1][0] == chart.plot_right
    assert points[1][1] == chart.plot_top  # the high
    assert points[0][1] == chart.plot_bottom  # the low
    assert chart.change == Decimal("5")


def test_dashboard_when_not_logged_in_then_redirected_to_login(client: Client, db: None) -> None:
    response = client.get(reverse("dashboard"))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_dashboard_when_guard_never_read_then_database_data_and_notice(
    operator_client: Client, defaults: None
) -> None:
    Position.objects.create(
        symbol_id=1,
        side=Position.Side.LONG,
        status=Position.Status.OPEN,
        quantity=Decimal("0.01"),
        entry_price=Decimal("100000"),
        take_profit_price=Decimal("100500"),
        stop_loss_price=Decimal("99700"),
        leverage=2,
        margin_type="ISOLATED",
    )
    _snapshot(5, "1000")
    _snapshot(0, "1010")

    response = operator_client.get(reverse("dashboard"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "No exchange read yet" in html
    assert "100500.0" in html and "99700.0" in html  # on BTCUSDT's 0.1 tick
    assert 'id="equity-chart"' in html


def test_dashboard_when_position_open_then_mark_and_unrealized_pnl_from_guard_read(
    operator_client: Client, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    funded_market.set_price("BTCUSDT", "100100")
    guard_pass(gateway=fast_gateway())

    response = operator_client.get(reverse("dashboard"))

    positions = response.context["open_positions"]
    assert positions.age_seconds is not None and positions.age_seconds < 60
    assert [(r.symbol, r.mark_price) for r in positions.rows] == [("BTCUSDT", Decimal("100100"))]
    assert positions.rows[0].unrealized_pnl > 0
    assert positions.rows[0].stop_on_exchange and positions.rows[0].take_profit_on_exchange


def test_close_everything_when_staff_without_permission_then_forbidden(
    staff_client: Client,
) -> None:
    response = staff_client.post(reverse("dashboard_close_everything"), {"confirm": "yes"})

    assert response.status_code == 403
    assert TradingSwitch.objects.filter(enabled=False).count() == 0


def test_close_everything_when_get_then_confirmation_page_and_nothing_done(
    operator_client: Client, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")

    response = operator_client.get(reverse("dashboard_close_everything"))

    assert response.status_code == 200
    assert b"confirm-emergency-close" in response.content
    assert TradingSwitch.load().enabled is True
    assert len(funded_market.positions()) == 1


def test_close_everything_when_confirmed_then_halted_and_flat(
    operator_client: Client, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")

    response = operator_client.post(
        reverse("dashboard_close_everything"), {"confirm": "yes", "reason": "drill"}, follow=True
    )

    assert response.status_code == 200
    assert funded_market.positions() == []
    assert TradingSwitch.load().enabled is False
    assert "BTCUSDT: closed" in response.content.decode()


def test_position_admin_when_loaded_then_offers_emergency_close() -> None:
    model_admin = admin.site._registry[Position]

    assert isinstance(model_admin, EmergencyCloseActionMixin), (
        "trading/admin.py: PositionAdmin must use dashboard.admin_actions.EmergencyCloseActionMixin"
    )
