"""The admin refuses bad rules with a message, changes nothing, and records every change."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.forms.models import model_to_dict
from django.test import Client

from risk.models import RiskProfile, RuleChange
from trading.models import Symbol, TradingSwitch


@pytest.fixture
def admin_client_logged_in(defaults: None) -> Client:
    user = get_user_model().objects.create_superuser("trader", "t@example.com", "pw-trader-123")
    client = Client()
    client.force_login(user)
    return client


def _form_data(instance: object, **changes: object) -> dict[str, object]:
    data = {k: ("" if v is None else v) for k, v in model_to_dict(instance).items()}
    data.update(changes)
    return {k: v for k, v in data.items() if not isinstance(v, bool) or v}


def _post_profile(client: Client, **changes: object):
    profile = RiskProfile.objects.get(name="default")
    return client.post(
        f"/admin/risk/riskprofile/{profile.pk}/change/", _form_data(profile, **changes)
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("leverage", 0, "Ensure this value is greater than or equal to 1."),
        ("leverage", 100, "Leverage 100x exceeds the maximum of BNBUSDT (75x)."),
        ("risk_pct", "150", "Must be above 0 and at most 100 percent."),
        ("stop_loss_pct", "0", "Must be above 0 and at most 50 percent."),
        ("take_profit_pct", "-1", "Must be above 0 and at most 50 percent."),
        ("max_risk_usd", "0", "Must be positive."),
        ("max_open_positions", 0, "Ensure this value is greater than or equal to 1."),
    ],
)
def test_risk_profile_change_when_value_bad_then_refused_with_message_and_nothing_changed(
    admin_client_logged_in: Client, field: str, value: object, message: str
) -> None:
    before = model_to_dict(RiskProfile.objects.get(name="default"))

    response = _post_profile(admin_client_logged_in, **{field: value})

    assert response.status_code == 200  # the form is shown again, with its errors
    assert message in response.content.decode()
    assert model_to_dict(RiskProfile.objects.get(name="default")) == before
    assert not RuleChange.objects.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tick_size": "0"}, "Must be positive."),
        ({"step_size": "-0.001"}, "Must be positive."),
        ({"min_qty": "0.0015"}, "minQty 0.0015 is not a multiple of stepSize 0.001."),
        ({"min_qty": "2000", "max_qty": "1000"}, "maxQty must not be below minQty."),
        ({"name": "btcusdt"}, "Symbols are upper case, e.g. BTCUSDT."),
    ],
)
def test_symbol_change_when_filter_bad_then_refused_with_message_and_nothing_changed(
    admin_client_logged_in: Client, changes: dict[str, str], message: str
) -> None:
    symbol = Symbol.objects.get(name="BTCUSDT")
    before = model_to_dict(symbol)

    response = admin_client_logged_in.post(
        f"/admin/trading/symbol/{symbol.pk}/change/", _form_data(symbol, **changes)
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert model_to_dict(Symbol.objects.get(pk=symbol.pk)) == before


def test_risk_profile_change_when_valid_then_saved_and_history_keeps_old_and_new(
    admin_client_logged_in: Client,
) -> None:
    response = _post_profile(admin_client_logged_in, leverage=3, stop_loss_pct="0.4")

    assert response.status_code == 302
    profile = RiskProfile.objects.get(name="default")
    assert (profile.leverage, profile.stop_loss_pct) == (3, Decimal("0.4"))
    changes = {c.field: (c.old_value, c.new_value, c.changed_by) for c in RuleChange.objects.all()}
    assert changes == {
        "leverage": ("2", "3", "trader"),
        "stop_loss_pct": ("0.3000", "0.4", "trader"),
    }
    page = admin_client_logged_in.get(f"/admin/risk/riskprofile/{profile.pk}/change/")
    assert "leverage</b>: 2 → 3" in page.content.decode()


def test_risk_profile_activate_when_another_active_then_only_one_stays_active(
    admin_client_logged_in: Client,
) -> None:
    response = admin_client_logged_in.post(
        "/admin/risk/riskprofile/add/",
        {
            "name": "careful",
            "is_active": "on",
            "leverage": 1,
            "margin_type": "ISOLATED",
            "risk_pct": "10",
            "max_risk_usd": "100",
            "take_profit_pct": "0.5",
            "stop_loss_pct": "0.3",
            "min_holding_seconds": 0,
            "max_open_positions": 1,
            "partial_close_tolerance_pct": "10",
            "daily_loss_limit_usd": "",
        },
    )

    assert response.status_code == 302
    assert list(RiskProfile.objects.filter(is_active=True).values_list("name", flat=True)) == [
        "careful"
    ]
    assert RuleChange.objects.filter(object_repr__startswith="default", field="is_active").exists()


def test_trading_switch_change_when_halted_in_admin_then_who_and_why_recorded(
    admin_client_logged_in: Client,
) -> None:
    response = admin_client_logged_in.post(
        "/admin/trading/tradingswitch/1/change/", {"reason": "news at 14:00"}
    )

    assert response.status_code == 302
    switch = TradingSwitch.load()
    assert (switch.enabled, switch.reason, switch.changed_by) == (False, "news at 14:00", "trader")
    assert RuleChange.objects.filter(field="enabled", old_value="True", new_value="False").exists()
