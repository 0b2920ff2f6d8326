"""The dashboard reads the guard's last exchange read: no request per view, its age shown, a
live fragment for the page to refresh itself, a view permission, a link from the admin home."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from dashboard.models import PositionCandles
from tests.support.exchange import fast_gateway
from trading.exchange_view import exchange_view_last
from trading.guard import guard_pass


def _requests(market: object) -> int:
    return sum(market.stats()["requests"].values())


@pytest.fixture
def operator_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("operator", "op@example.com", "pw"))
    return client


def _staff_client(*permissions: str) -> Client:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def test_dashboard_when_loaded_many_times_then_no_exchange_request(
    operator_client: Client, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    open_position("BNBUSDT", "SHORT")
    guard_pass(gateway=fast_gateway())
    before = _requests(funded_market)

    for _ in range(15):
        assert operator_client.get(reverse("dashboard")).status_code == 200
        assert operator_client.get(reverse("dashboard_live")).status_code == 200

    assert _requests(funded_market) == before
    rows = operator_client.get(reverse("dashboard_live")).context["open_positions"].rows
    assert {r.symbol for r in rows if r.mark_price is not None} == {"BTCUSDT", "BNBUSDT"}


def test_dashboard_live_when_guard_reads_new_price_then_fragment_shows_it(
    operator_client: Client, funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    guard_pass(gateway=fast_gateway())
    first = operator_client.get(reverse("dashboard_live")).content.decode()
    funded_market.set_price("BTCUSDT", "100321.7")

    guard_pass(gateway=fast_gateway())
    second = operator_client.get(reverse("dashboard_live"))

    html = second.content.decode()
    assert "100321.7" not in first and "100321.7" in html
    assert 'id="data-age-seconds"' in html
    assert second["Cache-Control"] == "no-store"
    assert "<html" not in html  # a fragment, swapped into the page


def test_exchange_view_when_guard_pass_then_positions_and_exits_stored(
    funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")

    guard_pass(gateway=fast_gateway())

    view = exchange_view_last()
    assert view.taken_at is not None
    assert view.positions["BTCUSDT"].side == "LONG"
    assert {o.order_type for o in view.orders if o.symbol == "BTCUSDT"} >= {"STOP_MARKET"}


@pytest.mark.parametrize("name", ["dashboard", "dashboard_live"])
def test_dashboard_when_staff_without_view_permission_then_forbidden(
    defaults: None, name: str
) -> None:
    client = _staff_client()

    response = client.get(reverse(name))

    assert response.status_code == 403


def test_dashboard_when_staff_with_view_permission_then_shown(defaults: None) -> None:
    client = _staff_client("view_position")

    response = client.get(reverse("dashboard"))

    assert response.status_code == 200
    assert b'id="close-everything"' not in response.content  # viewing is not closing


def test_admin_home_when_loaded_then_links_the_dashboard(operator_client: Client) -> None:
    response = operator_client.get(reverse("admin:index"))

    html = response.content.decode()
    assert 'id="dashboard-home-link"' in html
    assert 'id="header-dashboard-link"' in html
    assert html.count(f'href="{reverse("dashboard")}"') >= 3


def test_position_page_when_viewed_twice_then_candles_fetched_once_and_levels_drawn(
    operator_client: Client, funded_market, open_position
) -> None:
    position = open_position("BTCUSDT", "LONG")
    url = reverse("dashboard_position", args=[position.pk])

    first = operator_client.get(url)
    before = _requests(funded_market)
    for _ in range(5):
        again = operator_client.get(url)

    assert _requests(funded_market) == before
    assert PositionCandles.objects.filter(position=position).count() == 1
    html = again.content.decode()
    assert first.status_code == 200
    assert 'data-level="entry"' in html and 'data-level="stop-loss"' in html
    assert 'data-level="take-profit"' in html
    assert f"stop-loss {position.stop_loss_price.normalize():f}" in html


def test_position_page_when_closed_then_orders_events_and_exit_shown(
    operator_client: Client, funded_market, open_position
) -> None:
    position = open_position("BTCUSDT", "LONG")
    funded_market.set_price("BTCUSDT", "99600")
    guard_pass(gateway=fast_gateway())
    position.refresh_from_db()
    assert position.status == "CLOSED"

    response = operator_client.get(reverse("dashboard_position", args=[position.pk]))

    html = response.content.decode()
    assert 'data-level="exit"' in html
    assert html.count("<tr>") >= 4  # entry, SL, TP orders and events
    assert "Stop-loss" in html
    assert response.context["events"].filter(kind="CLOSED").exists()
    assert Decimal(response.context["position"].realized_pnl) < 0
