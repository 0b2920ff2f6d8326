"""The kill switch through its service, monitoring records kept, deletions in the history."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from core.models import Heartbeat, Lease
from monitoring.models import Alert
from risk.models import RiskProfile, RuleChange
from signals.models import SignalDecision
from trading.models import Symbol, TradingSwitch


@pytest.fixture
def admin_client(defaults: None) -> Client:
    user = get_user_model().objects.create_superuser("trader", "t@example.com", "pw-trader-123")
    client = Client()
    client.force_login(user)
    return client


def _switch_post(client: Client, **data: str):
    return client.post("/admin/trading/tradingswitch/1/change/", data)


def test_kill_switch_form_when_halted_without_reason_then_refused_and_trading_stays_on(
    admin_client: Client,
) -> None:
    response = _switch_post(admin_client, reason="")  # "enabled" unchecked: halt

    assert response.status_code == 200
    assert "a reason is required" in response.content.decode()
    assert TradingSwitch.load().enabled is True
    assert not RuleChange.objects.exists()


def test_kill_switch_form_when_halted_with_reason_then_alert_raised_and_recorded(
    admin_client: Client, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = _switch_post(admin_client, reason="  exchange maintenance  ")

    assert response.status_code == 302
    switch = TradingSwitch.load()
    assert (switch.enabled, switch.reason, switch.changed_by) == (
        False,
        "exchange maintenance",
        "trader",
    )
    alert = Alert.objects.get(key="trading.halted")
    assert alert.message == "Trading halted by trader: exchange maintenance"
    change = RuleChange.objects.get(model="trading.tradingswitch", field="enabled")
    assert (change.old_value, change.new_value, change.changed_by) == ("True", "False", "trader")


def test_monitoring_records_when_delete_posted_by_superuser_then_forbidden_and_kept(
    admin_client: Client,
) -> None:
    now = timezone.now()
    alert = Alert.objects.create(key="k", severity="warning", message="m")
    heartbeat = Heartbeat.objects.create(
        process="guard", started_at=now, finished_at=now, duration_ms=1, requests=1, weight=1
    )
    lease = Lease.objects.create(name="guard", owner="w1", expires_at=now)

    responses = [
        admin_client.post(f"/admin/{app}/{name}/{obj.pk}/delete/", {"post": "yes"})
        for app, name, obj in (
            ("monitoring", "alert", alert),
            ("core", "heartbeat", heartbeat),
            ("core", "lease", lease),
        )
    ]
    bulk = admin_client.post(
        "/admin/monitoring/alert/",
        {"action": "delete_selected", "_selected_action": [alert.pk], "post": "yes"},
    )

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert bulk.status_code in (200, 302)
    assert Alert.objects.filter(pk=alert.pk).exists()
    assert Heartbeat.objects.filter(pk=heartbeat.pk).exists()
    assert Lease.objects.filter(pk=lease.pk).exists()


def test_symbol_delete_when_decisions_refer_to_it_then_refused_and_decisions_kept(
    admin_client: Client,
) -> None:
    symbol = Symbol.objects.get(name="ETHUSDT")
    SignalDecision.objects.create(symbol=symbol, agent="rule", action="HOLD", reason="flat")

    admin_client.post(f"/admin/trading/symbol/{symbol.pk}/delete/", {"post": "yes"})

    assert Symbol.objects.filter(pk=symbol.pk).exists()
    assert SignalDecision.objects.filter(symbol=symbol).count() == 1
    assert not RuleChange.objects.filter(field="deleted").exists()


def test_symbol_delete_when_nothing_refers_to_it_then_deleted_and_in_rule_history(
    admin_client: Client,
) -> None:
    symbol = Symbol.objects.get(name="ETHUSDT")

    response = admin_client.post(f"/admin/trading/symbol/{symbol.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Symbol.objects.filter(pk=symbol.pk).exists()
    change = RuleChange.objects.get(model="trading.symbol", field="deleted")
    assert change.object_repr == "ETHUSDT" and change.changed_by == "trader"
    assert "max_leverage=" in change.old_value


def test_risk_profile_bulk_delete_when_confirmed_then_each_in_rule_history(
    admin_client: Client,
) -> None:
    spare = RiskProfile.objects.create(name="spare", leverage=3)

    admin_client.post(
        "/admin/risk/riskprofile/",
        {"action": "delete_selected", "_selected_action": [spare.pk], "post": "yes"},
    )

    assert not RiskProfile.objects.filter(pk=spare.pk).exists()
    change = RuleChange.objects.get(model="risk.riskprofile", field="deleted")
    assert change.object_repr == "spare" and "leverage=3" in change.old_value
