"""The emergency-close permission, the "operators" group, and the password asked again."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from django.urls import reverse

from dashboard.reauth import REAUTH_SECONDS
from tests.support.exchange import exchange_quantity
from trading.models import Position, TradingSwitch
from trading.operators import OPERATORS_GROUP, operators_group_ensure

PASSWORD = "operator-password-1"


@pytest.fixture
def operator_user(db: None) -> User:
    """A staff user who is not a superuser, member of the "operators" group only."""
    if not Group.objects.filter(name=OPERATORS_GROUP).exists():
        # A transactional test before this one flushed what the migration created.
        operators_group_ensure(apps=django_apps)
    user = User.objects.create_user("night-operator", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    return user


@pytest.fixture
def operator_client(operator_user: User) -> Client:
    client = Client()
    # A real password login (the login counts as entering the password); the login throttle's
    # backend needs the request that a test client's login does not build by itself.
    assert client.login(
        request=RequestFactory().post("/admin/login/"),
        username=operator_user.username,
        password=PASSWORD,
    )
    return client


def test_operators_group_when_migrated_then_holds_emergency_close(operator_user: User) -> None:
    assert not operator_user.is_superuser
    assert operator_user.has_perm("trading.emergency_close")
    assert operator_user.has_perm("trading.view_position")
    assert operator_user.has_perm("monitoring.view_alert")
    assert operator_user.has_perm("dashboard.view_equitysnapshot")
    assert not operator_user.has_perm("trading.change_symbol")


def test_close_everything_when_operator_not_superuser_then_closed_and_flat(
    operator_client: Client, open_position, funded_market
) -> None:
    open_position("BTCUSDT", "LONG")

    response = operator_client.post(
        reverse("dashboard_close_everything"), {"confirm": "yes", "reason": "drill"}, follow=True
    )

    assert response.status_code == 200
    assert "BTCUSDT: closed" in response.content.decode()
    assert exchange_quantity(funded_market, "BTCUSDT") == 0
    assert TradingSwitch.load().enabled is False


def test_close_everything_when_password_entered_long_ago_then_refused_and_nothing_closed(
    operator_client: Client, open_position, funded_market
) -> None:
    position = open_position("BTCUSDT", "LONG")

    with time_machine.travel(timedelta(seconds=REAUTH_SECONDS + 60)):
        response = operator_client.post(
            reverse("dashboard_close_everything"), {"confirm": "yes", "reason": "drill"}
        )

    assert response.status_code == 403
    assert 'id="id_password"' in response.content.decode()
    assert exchange_quantity(funded_market, "BTCUSDT") != 0
    position.refresh_from_db()
    assert position.status == Position.Status.OPEN
    assert TradingSwitch.load().enabled is True


def test_close_everything_when_password_wrong_then_refused_and_nothing_closed(
    operator_client: Client, open_position, funded_market
) -> None:
    open_position("BTCUSDT", "LONG")

    with time_machine.travel(timedelta(seconds=REAUTH_SECONDS + 60)):
        response = operator_client.post(
            reverse("dashboard_close_everything"),
            {"confirm": "yes", "reason": "drill", "password": "not-the-password"},
        )

    assert response.status_code == 403
    assert exchange_quantity(funded_market, "BTCUSDT") != 0
    assert TradingSwitch.load().enabled is True


def test_close_everything_when_password_entered_again_then_closed(
    operator_client: Client, open_position, funded_market
) -> None:
    open_position("BTCUSDT", "LONG")

    with time_machine.travel(timedelta(seconds=REAUTH_SECONDS + 60)):
        response = operator_client.post(
            reverse("dashboard_close_everything"),
            {"confirm": "yes", "reason": "drill", "password": PASSWORD},
            follow=True,
        )

    assert "BTCUSDT: closed" in response.content.decode()
    assert exchange_quantity(funded_market, "BTCUSDT") == 0


def test_emergency_close_action_when_password_entered_long_ago_then_refused_and_nothing_closed(
    operator_client: Client, open_position, funded_market
) -> None:
    position = open_position("BTCUSDT", "LONG")

    with time_machine.travel(timedelta(seconds=REAUTH_SECONDS + 60)):
        response = operator_client.post(
            "/admin/trading/position/",
            {
                "action": "emergency_close_selected",
                "_selected_action": [position.pk],
                "confirm": "yes",
                "reason": "drill",
            },
        )

    assert response.status_code == 403
    assert exchange_quantity(funded_market, "BTCUSDT") != 0
    assert TradingSwitch.load().enabled is True
