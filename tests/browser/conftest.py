"""Fixtures of the browser tests: Debian's Chromium driven by Playwright against ``live_server``.

Playwright's sync API runs an event loop in the test thread, and Django refuses database calls
from a thread with a running loop unless told that this is deliberate.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth.models import User

from dashboard.admin_actions import EmergencyCloseActionMixin, emergency_close_selected
from dashboard.permissions import may_emergency_close
from trading.models import Position

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "browser-test-password"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (requirements/dev.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: object, live_server: object) -> Iterator[object]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 1000}
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def operator(transactional_db: None) -> User:
    return User.objects.create_superuser("operator", "operator@example.com", PASSWORD)


@pytest.fixture
def logged_in(page: object, operator: User) -> object:
    """The page, logged in to the admin as a superuser through the login form."""
    page.goto("/admin/login/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    return page


@pytest.fixture
def emergency_action(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emergency-close action on the Position admin.

    A no-op once ``trading.admin.PositionAdmin`` uses ``EmergencyCloseActionMixin``; until then it
    wires the action on the registered admin for this test only.
    """
    model_admin = admin.site._registry[Position]
    if isinstance(model_admin, EmergencyCloseActionMixin):
        return
    monkeypatch.setattr(model_admin, "actions", [emergency_close_selected], raising=False)
    monkeypatch.setattr(
        model_admin,
        "has_emergency_close_permission",
        lambda request: may_emergency_close(request.user),
        raising=False,
    )


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
