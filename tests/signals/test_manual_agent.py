"""Manual signals: entered in the admin, used exactly once by the symbol's next cycle."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client

from signals.models import ManualSignal, SignalDecision
from signals.services import manual_signal_claim, manual_signal_create, signal_for_symbol
from trading.gateway import exchange_gateway
from trading.models import Strategy, Symbol


@pytest.fixture
def manual_btc(defaults: None) -> Symbol:
    Strategy.objects.filter(symbol__name="BTCUSDT").update(agent=Strategy.Agent.MANUAL)
    return Symbol.objects.get(name="BTCUSDT")


def test_signal_for_symbol_when_two_cycles_after_one_manual_signal_then_consumed_once(
    manual_btc: Symbol, paper: Any
) -> None:
    signal = manual_signal_create(
        symbol=manual_btc, action="LONG", note="breakout", created_by="alice"
    )
    gateway = exchange_gateway()

    first = signal_for_symbol(symbol=manual_btc, gateway=gateway)
    second = signal_for_symbol(symbol=manual_btc, gateway=gateway)

    assert (first.action, second.action) == ("LONG", "HOLD")
    assert first.reason == f"manual signal #{signal.id} by alice: breakout"
    assert second.reason == "no manual signal pending"
    signal.refresh_from_db()
    assert signal.consumed_at is not None
    assert SignalDecision.objects.get(id=first.decision_id).manual_signal == signal
    assert (
        SignalDecision.objects.filter(symbol=manual_btc, manual_signal__isnull=False).count() == 1
    )


def test_manual_signal_claim_when_already_claimed_then_none(manual_btc: Symbol) -> None:
    manual_signal_create(symbol=manual_btc, action="SHORT", created_by="alice")

    claimed = manual_signal_claim(symbol=manual_btc)
    again = manual_signal_claim(symbol=manual_btc)

    assert claimed is not None
    assert again is None
    assert ManualSignal.objects.filter(consumed_at__isnull=False).count() == 1


def test_manual_signal_claim_when_several_pending_then_newest_taken_and_older_superseded(
    manual_btc: Symbol,
) -> None:
    older = manual_signal_create(symbol=manual_btc, action="LONG", created_by="alice")
    newer = manual_signal_create(symbol=manual_btc, action="FLAT", created_by="alice")
    Strategy.objects.filter(symbol__name="BNBUSDT").update(agent=Strategy.Agent.MANUAL)
    other = manual_signal_create(
        symbol=Symbol.objects.get(name="BNBUSDT"), action="SHORT", created_by="bob"
    )

    claimed = manual_signal_claim(symbol=manual_btc)

    assert claimed == newer
    older.refresh_from_db()
    other.refresh_from_db()
    assert older.superseded and older.consumed_at is not None
    assert other.consumed_at is None
    assert manual_signal_claim(symbol=manual_btc) is None


def test_manual_signal_create_when_strategy_not_manual_then_refused(defaults: None) -> None:
    # BTCUSDT stays on the rule-based agent: a pending signal would fire whenever someone later
    # switched it to manual.
    btc = Symbol.objects.get(name="BTCUSDT")

    with pytest.raises(ValidationError) as refused:
        manual_signal_create(symbol=btc, action="LONG", created_by="alice")

    assert "set its strategy to Manual first" in str(refused.value)
    assert not ManualSignal.objects.exists()


def test_admin_add_manual_signal_when_strategy_not_manual_then_form_error(
    defaults: None,
) -> None:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)

    response = client.post(
        "/admin/signals/manualsignal/add/",
        {"symbol": Symbol.objects.get(name="BNBUSDT").id, "action": "LONG", "note": ""},
    )

    assert response.status_code == 200
    assert b"set its strategy to Manual first" in response.content
    assert not ManualSignal.objects.exists()


def test_admin_add_manual_signal_when_posted_then_created_by_operator_and_pending(
    manual_btc: Symbol,
) -> None:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)

    response = client.post(
        "/admin/signals/manualsignal/add/",
        {"symbol": manual_btc.id, "action": "SHORT", "note": "news"},
    )

    assert response.status_code == 302
    signal = ManualSignal.objects.get()
    assert (signal.action, signal.created_by, signal.consumed_at) == ("SHORT", "ops", None)


def test_admin_manual_signal_when_consumed_then_cannot_be_changed_or_deleted(
    manual_btc: Symbol,
) -> None:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    signal = manual_signal_create(symbol=manual_btc, action="LONG", created_by="ops")
    manual_signal_claim(symbol=manual_btc)

    change = client.post(
        f"/admin/signals/manualsignal/{signal.id}/change/",
        {"symbol": manual_btc.id, "action": "SHORT", "note": ""},
    )
    delete = client.post(f"/admin/signals/manualsignal/{signal.id}/delete/", {"post": "yes"})

    assert change.status_code == 403
    assert delete.status_code == 403
    signal.refresh_from_db()
    assert signal.action == "LONG"
