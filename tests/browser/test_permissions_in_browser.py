"""Least privilege in the browser: an operator (not a superuser) closes everything after giving
the password again; a user who may only view the schedules cannot change any of them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from dashboard.reauth import REAUTH_SECONDS
from risk.models import RuleChange
from signals.schedules import cycle_schedules_sync
from trading.models import Position, Symbol, TradingSwitch
from trading.operators import OPERATORS_GROUP, operators_group_ensure
from trading.services import position_open

pytestmark = pytest.mark.browser

PASSWORD = "least-privilege-pw-1"


@pytest.fixture
def rules(transactional_db: None) -> None:
    call_command("loaddata", "defaults", verbosity=0)
    cycle_schedules_sync()


def _login(page: object, username: str) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def test_close_everything_when_operator_group_member_gives_password_again_then_flat(
    page, paper, rules, artifacts: Path
) -> None:
    operators_group_ensure(apps=django_apps)  # the transactional flush removed the migration's
    user = User.objects.create_user("night-operator", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS_GROUP))
    paper.set_price("BTCUSDT", "100000")
    paper.set_balance("USDT", "10000")
    outcome = position_open(symbol=Symbol.objects.get(name="BTCUSDT"), side="LONG", reason="t")
    assert outcome.ok, outcome
    _login(page, user.username)

    with time_machine.travel(timedelta(seconds=REAUTH_SECONDS + 60)):
        page.goto("/admin/dashboard/")
        page.click("#close-everything")
        page.locator("#id_password").fill("wrong-password")
        page.click("#confirm-emergency-close")
        page.locator("#reauth-refused").wait_for()
        assert len(paper.positions()) == 1
        assert TradingSwitch.load().enabled is True

        page.locator("#id_password").fill(PASSWORD)
        page.screenshot(path=str(artifacts / "emergency_reauth.png"), full_page=True)
        page.click("#confirm-emergency-close")
        page.locator(".messagelist").wait_for()

    assert "BTCUSDT: closed" in page.locator(".messagelist").inner_text()
    assert paper.positions() == []
    assert paper.open_orders() == {"orders": [], "algo_orders": []}
    assert Position.objects.get(pk=outcome.position.pk).close_reason == "EMERGENCY"
    assert TradingSwitch.load().enabled is False
    assert not user.is_superuser


def test_schedules_when_user_may_only_view_then_no_schedule_can_be_changed(
    page, rules, artifacts: Path
) -> None:
    user = User.objects.create_user("auditor", password=PASSWORD, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_periodictask", "view_intervalschedule"])
    )
    before = {t.name: (t.enabled, t.interval_id) for t in PeriodicTask.objects.all()}
    guard = PeriodicTask.objects.get(task="trading.tasks.guard_pass_task")
    _login(page, user.username)

    page.goto("/admin/django_celery_beat/periodictask/")
    page.locator("#result_list").wait_for()
    assert page.locator("select[name=action]").count() == 0
    page.screenshot(path=str(artifacts / "schedules_view_only.png"), full_page=True)
    page.goto(f"/admin/django_celery_beat/periodictask/{guard.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0
    # A hand-made POST of each action with the user's own CSRF token, as a script could send.
    statuses = page.evaluate(
        """async ([ids, actions]) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const out = [];
            for (const action of actions) {
                const body = new URLSearchParams({csrfmiddlewaretoken: token, action: action});
                ids.forEach((id) => body.append("_selected_action", id));
                const r = await fetch("/admin/django_celery_beat/periodictask/", {
                    method: "POST", body: body, credentials: "same-origin"});
                out.push(r.status);
            }
            return out;
        }""",
        [
            [str(pk) for pk in PeriodicTask.objects.values_list("pk", flat=True)],
            ["disable_tasks", "toggle_tasks", "run_tasks"],
        ],
    )

    assert all(status in (200, 302) for status in statuses)
    assert {t.name: (t.enabled, t.interval_id) for t in PeriodicTask.objects.all()} == before
    assert not RuleChange.objects.exists()
