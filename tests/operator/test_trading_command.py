"""``manage.py trading --pause|--resume``: the kill switch from the shell."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from risk.models import RuleChange
from trading.models import TradingSwitch


def test_trading_when_pause_with_reason_then_halted_and_change_recorded(defaults: None) -> None:
    out = StringIO()

    call_command("trading", "--pause", "--reason", "exchange maintenance", stdout=out)

    switch = TradingSwitch.load()
    assert switch.enabled is False
    assert switch.reason == "exchange maintenance"
    assert switch.changed_by.startswith("shell:")
    change = RuleChange.objects.get(model="trading.tradingswitch", field="enabled")
    assert (change.old_value, change.new_value) == ("True", "False")
    assert "Trading HALTED" in out.getvalue()


def test_trading_when_pause_without_reason_then_refused_and_unchanged(defaults: None) -> None:
    with pytest.raises(CommandError, match="--pause needs --reason"):
        call_command("trading", "--pause")

    assert TradingSwitch.load().enabled is True
    assert not RuleChange.objects.filter(model="trading.tradingswitch").exists()


def test_trading_when_resume_after_pause_then_enabled(defaults: None) -> None:
    call_command("trading", "--pause", "--reason", "test", stdout=StringIO())
    out = StringIO()

    call_command("trading", "--resume", stdout=out)

    assert TradingSwitch.load().enabled is True
    assert "Trading ENABLED" in out.getvalue()
    assert RuleChange.objects.filter(model="trading.tradingswitch", field="enabled").count() == 2


def test_trading_when_already_paused_then_nothing_changes(defaults: None) -> None:
    call_command("trading", "--pause", "--reason", "first", stdout=StringIO())
    out = StringIO()

    call_command("trading", "--pause", "--reason", "second", stdout=out)

    assert TradingSwitch.load().reason == "first"
    assert "already halted" in out.getvalue()
    assert RuleChange.objects.filter(model="trading.tradingswitch", field="enabled").count() == 1


@pytest.mark.parametrize("args", [(), ("--pause", "--resume", "--reason", "x")])
def test_trading_when_not_exactly_one_of_pause_resume_then_usage_error(
    defaults: None, args: tuple[str, ...]
) -> None:
    with pytest.raises(CommandError):
        call_command("trading", *args)

    assert TradingSwitch.load().enabled is True
