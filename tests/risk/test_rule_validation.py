"""Rules validated on both sides, bounded, enforced by the database, on load and before sending."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict
from django.test import Client

from core.models import MonitoringSettings
from risk.models import RiskProfile, RuleChange
from risk.services import rule_save
from trading.models import Order, Strategy, Symbol, TradeEvent
from trading.services import position_open


@pytest.fixture
def admin(defaults: None) -> Client:
    user = get_user_model().objects.create_superuser("trader", "t@example.com", "pw-trader-123")
    client = Client()
    client.force_login(user)
    return client


def _form(instance: object, **changes: object) -> dict[str, object]:
    data = {k: ("" if v is None else v) for k, v in model_to_dict(instance).items()}
    data.update(changes)
    return {k: v for k, v in data.items() if not isinstance(v, bool) or v}


def _refused(instance: object, **changes: object) -> str:
    """Save ``changes`` through ``rule_save``; return the refusal, and check nothing changed."""
    before = model_to_dict(type(instance).objects.get(pk=instance.pk))
    for name, value in changes.items():
        setattr(instance, name, value)
    with pytest.raises(ValidationError) as caught:
        rule_save(instance=instance, actor="trader")
    assert model_to_dict(type(instance).objects.get(pk=instance.pk)) == before
    return " ".join(caught.value.messages)


# --- both sides of the cross-rules ---


def test_symbol_max_leverage_when_lowered_below_active_profile_then_refused(defaults) -> None:
    RiskProfile.objects.filter(name="default").update(leverage=20)

    message = _refused(Symbol.objects.get(name="BTCUSDT"), max_leverage=10)

    assert "The active profile default uses 20x, above this maximum of 10x" in message


def test_symbol_enable_when_bracket_below_active_profile_then_refused(defaults) -> None:
    RiskProfile.objects.filter(name="default").update(leverage=20)
    Symbol.objects.filter(name="ETHUSDT").update(max_leverage=10)

    message = _refused(Symbol.objects.get(name="ETHUSDT"), enabled=True)

    assert "uses 20x, above this maximum of 10x" in message


def test_symbol_enable_when_it_has_own_lower_profile_then_accepted(defaults) -> None:
    RiskProfile.objects.filter(name="default").update(leverage=20)
    Symbol.objects.filter(name="ETHUSDT").update(max_leverage=10)
    own = RiskProfile.objects.create(name="eth", leverage=5)
    eth = Symbol.objects.get(name="ETHUSDT")
    eth.enabled, eth.risk_profile = True, own

    rule_save(instance=eth, actor="trader")

    assert Symbol.objects.get(name="ETHUSDT").enabled is True


@pytest.mark.parametrize(
    ("leverage", "stop", "refused"),
    [(75, "5", True), (75, "1", True), (75, "0.8", False), (20, "4.6", True), (2, "0.3", False)],
)
def test_risk_profile_when_stop_loss_beyond_liquidation_then_refused(
    defaults, leverage: int, stop: str, refused: bool
) -> None:
    profile = RiskProfile.objects.get(name="default")
    profile.leverage, profile.stop_loss_pct = leverage, Decimal(stop)

    if refused:
        message = _refused(profile)
        assert f"stop is beyond liquidation at {leverage}x" in message
    else:
        rule_save(instance=profile, actor="trader")


# --- every number bounded ---


@pytest.mark.parametrize(
    ("model", "lookup", "field", "value"),
    [
        (Strategy, {"symbol__name": "BTCUSDT"}, "interval_seconds", 10**14),
        (Strategy, {"symbol__name": "BTCUSDT"}, "llm_timeout_seconds", 10**6),
        (MonitoringSettings, {}, "reattach_debounce_seconds", 10**11),
        (MonitoringSettings, {}, "alert_repeat_seconds", 10**11),
        (MonitoringSettings, {}, "guard_lease_seconds", 10**9),
        (MonitoringSettings, {}, "heartbeat_keep_minutes", 10**9),
        (RiskProfile, {"name": "default"}, "min_holding_seconds", 10**10),
        (RiskProfile, {"name": "default"}, "max_open_positions", 30000),
        (RiskProfile, {"name": "default"}, "max_risk_usd", Decimal("1e13")),
        (Symbol, {"name": "BTCUSDT"}, "max_leverage", 500),
        (Symbol, {"name": "BTCUSDT"}, "price_precision", 30),
    ],
)
def test_rule_save_when_number_beyond_its_bound_then_refused_and_nothing_changed(
    defaults, model, lookup: dict, field: str, value: object
) -> None:
    instance = model.load() if model is MonitoringSettings else model.objects.get(**lookup)

    _refused(instance, **{field: value})


@pytest.mark.parametrize(
    ("model", "lookup", "field", "value"),
    [
        (Strategy, {"symbol__name": "BTCUSDT"}, "interval_seconds", 10**9),
        (MonitoringSettings, {}, "reattach_debounce_seconds", 10**9),
        (RiskProfile, {"name": "default"}, "leverage", 500),
        (RiskProfile, {"name": "default"}, "risk_pct", Decimal("250")),
        (RiskProfile, {"name": "default"}, "stop_loss_pct", Decimal("0")),
        (Symbol, {"name": "BTCUSDT"}, "tick_size", Decimal("0")),
        (Symbol, {"name": "BTCUSDT"}, "max_qty", Decimal("0.0001")),
    ],
)
def test_database_when_value_never_allowed_written_directly_then_refused(
    defaults, model, lookup: dict, field: str, value: object
) -> None:
    if model is MonitoringSettings:
        MonitoringSettings.load()

    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(**lookup).update(**{field: value})


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999", "123456789012"])
def test_strategy_admin_when_parameter_not_finite_or_huge_then_clean_error_not_500(
    admin: Client, text: str
) -> None:
    strategy = Strategy.objects.get(symbol__name="BTCUSDT")
    before = model_to_dict(strategy)

    response = admin.post(
        f"/admin/trading/strategy/{strategy.pk}/change/",
        _form(strategy, parameters='{"ema_fast": ' + text + "}"),
    )

    assert response.status_code == 200
    assert "Parameter &#x27;ema_fast&#x27; must be" in response.content.decode()
    assert model_to_dict(Strategy.objects.get(pk=strategy.pk)) == before


def test_strategy_admin_when_interval_astronomical_then_refused_and_schedule_untouched(
    admin: Client,
) -> None:
    strategy = Strategy.objects.get(symbol__name="BTCUSDT")

    response = admin.post(
        f"/admin/trading/strategy/{strategy.pk}/change/",
        _form(strategy, interval_seconds=10**14, parameters=json.dumps(strategy.parameters)),
    )

    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 86400." in response.content.decode()
    assert Strategy.objects.get(pk=strategy.pk).interval_seconds == strategy.interval_seconds


# --- fixtures validated on load ---


def _fixture(tmp_path: Path, **profile_fields: object) -> Path:
    base = {
        "name": "default",
        "is_active": True,
        "leverage": 2,
        "margin_type": "ISOLATED",
        "risk_pct": "30",
        "max_risk_usd": "600",
        "take_profit_pct": "0.5",
        "stop_loss_pct": "0.3",
        "min_holding_seconds": 0,
        "max_open_positions": 2,
        "partial_close_tolerance_pct": "10",
        "daily_loss_limit_usd": None,
        "updated_at": "2026-01-01T00:00:00Z",
    }
    path = tmp_path / "rules.json"
    rows = [
        {"model": "risk.riskprofile", "pk": 1, "fields": {**base, **profile_fields}},
        {"model": "risk.riskprofile", "pk": 99, "fields": {**base, "name": "x", "is_active": 0}},
    ]
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"leverage": 500, "risk_pct": "250"}, "leverage"),
        ({"leverage": 100}, "Leverage 100x exceeds the maximum of BNBUSDT (75x)"),
        ({"leverage": 75, "stop_loss_pct": "5"}, "beyond liquidation"),
        ({"min_holding_seconds": 10**9}, "min_holding"),
    ],
)
def test_loaddata_when_fixture_breaks_a_rule_then_refused_and_nothing_loaded(
    defaults, tmp_path: Path, fields: dict, named: str
) -> None:
    before = model_to_dict(RiskProfile.objects.get(pk=1))

    with pytest.raises((CommandError, IntegrityError)) as caught:
        call_command("loaddata", str(_fixture(tmp_path, **fields)), verbosity=0)

    assert named in str(caught.value) or "risk_profile_" in str(caught.value)
    assert model_to_dict(RiskProfile.objects.get(pk=1)) == before
    assert not RiskProfile.objects.filter(pk=99).exists()


def test_loaddata_when_fixture_changes_a_rule_validly_then_loaded_and_in_history(
    defaults, tmp_path: Path
) -> None:
    call_command("loaddata", str(_fixture(tmp_path, leverage=3)), verbosity=0)

    assert RiskProfile.objects.get(pk=1).leverage == 3
    change = RuleChange.objects.get(model="risk.riskprofile", field="leverage")
    assert (change.old_value, change.new_value) == ("2", "3")
    assert change.changed_by.startswith("loaddata ")


# --- the order path checks the rules again ---


@pytest.mark.django_db(transaction=True)
def test_position_open_when_active_rules_invalid_then_refused_before_any_request(
    paper, defaults
) -> None:
    paper.set_price("BNBUSDT", "964")
    paper.set_balance("USDT", "10000")
    # Written past every validator (as a raw SQL edit would): 100x on a 75x symbol.
    RiskProfile.objects.filter(name="default").update(leverage=100)
    requests_before = paper.stats()["requests"]

    outcome = position_open(symbol=Symbol.objects.get(name="BNBUSDT"), side="LONG", reason="t")

    assert not outcome.ok
    assert "exceeds the maximum of BNBUSDT (75x)" in outcome.reason
    assert paper.stats()["requests"] == requests_before
    assert paper.positions() == []
    assert not Order.objects.exists()
    assert TradeEvent.objects.get().kind == TradeEvent.Kind.REFUSED
