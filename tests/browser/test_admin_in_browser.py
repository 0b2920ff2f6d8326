"""The admin as an operator uses it: rules, the dashboard, the emergency close, in Chromium."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

from dashboard.services import equity_snapshot_record
from risk.models import RiskProfile, RuleChange
from tests.support.exchange import fast_gateway
from trading.guard import guard_pass
from trading.models import Position, Symbol, TradingSwitch
from trading.services import position_open

pytestmark = pytest.mark.browser


@pytest.fixture
def rules(transactional_db: None) -> None:
    call_command("loaddata", "defaults", verbosity=0)


@pytest.fixture
def market(paper: object, rules: None) -> object:
    paper.set_price("BTCUSDT", "100000")
    paper.set_price("BNBUSDT", "964")
    paper.set_balance("USDT", "10000")
    return paper


def _open(symbol: str, side: str) -> Position:
    outcome = position_open(symbol=Symbol.objects.get(name=symbol), side=side, reason="browser")
    assert outcome.ok, outcome
    return outcome.position


def test_risk_rule_when_changed_in_admin_then_saved_and_in_history(logged_in, rules) -> None:
    page = logged_in

    page.goto("/admin/risk/riskprofile/1/change/")
    page.fill("#id_take_profit_pct", "0.6")
    page.click("input[name=_save]")

    page.locator(".messagelist .success").wait_for()
    assert RiskProfile.objects.get(pk=1).take_profit_pct == Decimal("0.6")
    change = RuleChange.objects.get(model="risk.riskprofile", field="take_profit_pct")
    assert (change.old_value, change.new_value, change.changed_by) == ("0.5000", "0.6", "operator")


def test_risk_rule_when_bad_value_then_refused_with_its_message(logged_in, rules) -> None:
    page = logged_in

    page.goto("/admin/risk/riskprofile/1/change/")
    page.fill("#id_take_profit_pct", "80")
    page.click("input[name=_save]")

    page.locator(".errornote").wait_for()
    assert "Must be above 0 and at most 50 percent." in page.locator(".errorlist").all_inner_texts()
    assert RiskProfile.objects.get(pk=1).take_profit_pct == Decimal("0.5")


def test_dashboard_when_equity_recorded_then_chart_and_positions_shown(
    logged_in, market, artifacts: Path
) -> None:
    page = logged_in
    equity_snapshot_record()
    _open("BTCUSDT", "LONG")
    market.set_price("BTCUSDT", "100200")
    equity_snapshot_record()
    market.set_price("BTCUSDT", "100100")
    equity_snapshot_record()
    guard_pass(gateway=fast_gateway())  # the dashboard shows the guard's last read

    page.goto("/admin/dashboard/")

    line = page.locator("#equity-chart path.line")
    line.wait_for()
    assert line.get_attribute("d").count("L") == 2  # three points: M, L, L
    box = line.bounding_box()
    assert box is not None and box["width"] > 100
    positions = page.locator("#positions table").inner_text()
    assert "BTCUSDT" in positions and "100100" in positions
    assert "Trading ENABLED" in page.locator("#switch").inner_text()
    assert page.locator("#heartbeats").is_visible()
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)


def test_emergency_close_action_when_confirmed_then_flat_on_exchange(
    logged_in, market, emergency_action: None, artifacts: Path
) -> None:
    page = logged_in
    position = _open("BTCUSDT", "LONG")
    assert len(market.positions()) == 1

    page.goto("/admin/trading/position/")
    page.check(f"input[name=_selected_action][value='{position.pk}']")
    page.select_option("select[name=action]", "emergency_close_selected")
    page.click("button[name=index]")
    page.locator("#confirm-emergency-close").wait_for()
    assert "BTCUSDT" in page.locator("#plan-positions").inner_text()
    page.screenshot(path=str(artifacts / "emergency_confirm.png"), full_page=True)
    page.click("#confirm-emergency-close")

    page.locator(".messagelist").wait_for()
    assert "BTCUSDT: closed" in page.locator(".messagelist").inner_text()
    assert market.positions() == []
    assert market.open_orders() == {"orders": [], "algo_orders": []}
    position.refresh_from_db()
    assert position.close_reason == Position.CloseReason.EMERGENCY
    assert TradingSwitch.load().enabled is False


def test_close_everything_button_when_confirmed_then_flat_on_exchange(
    logged_in, market, artifacts: Path
) -> None:
    page = logged_in
    _open("BTCUSDT", "LONG")
    _open("BNBUSDT", "SHORT")

    page.goto("/admin/dashboard/")
    page.click("#close-everything")
    page.locator("#confirm-emergency-close").wait_for()
    page.click("#confirm-emergency-close")

    page.locator(".messagelist").wait_for()
    messages = page.locator(".messagelist").inner_text()
    assert "BTCUSDT: closed" in messages and "BNBUSDT: closed" in messages
    assert market.positions() == []
    assert "Trading HALTED" in page.locator("#switch").inner_text()
    page.screenshot(path=str(artifacts / "dashboard_after_close.png"), full_page=True)
