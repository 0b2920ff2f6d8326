"""Failed admin logins are throttled; a session lasts hours, not weeks."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

PASSWORD = "the-right-password-4711"


def _login(client: Client, password: str) -> int:
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "trader", "password": password},
        REMOTE_ADDR="203.0.113.9",
    ).status_code


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_login_when_thirty_wrong_passwords_then_right_one_refused_until_cooloff(db: None) -> None:
    get_user_model().objects.create_superuser("trader", "t@example.com", PASSWORD)
    client = Client()

    with time_machine.travel(timezone.now(), tick=False) as clock:
        statuses = [_login(client, f"guess-{n}") for n in range(30)]
        status = _login(client, PASSWORD)

        assert statuses[0] == 200  # the form again, with its error
        assert statuses[-1] == 429
        assert status == 429
        assert not _logged_in(client)
        assert client.get("/admin/").status_code == 302  # still sent to the login page

        # Not a dead end: once the cool-off has passed, the right password works.
        clock.shift(settings.AXES_COOLOFF_TIME + timedelta(seconds=1))
        status = _login(client, PASSWORD)

    assert status == 302
    assert _logged_in(client)


def test_login_when_a_few_typos_then_right_password_accepted(db: None) -> None:
    get_user_model().objects.create_superuser("trader", "t@example.com", PASSWORD)
    client = Client()

    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, f"typo-{n}") == 200

    assert _login(client, PASSWORD) == 302
    assert _logged_in(client)


def test_login_when_session_created_then_cookie_expires_within_hours(db: None) -> None:
    get_user_model().objects.create_superuser("trader", "t@example.com", PASSWORD)
    client = Client()

    assert _login(client, PASSWORD) == 302

    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE == 8 * 3600
    assert client.session.get_expiry_age() <= 12 * 3600
