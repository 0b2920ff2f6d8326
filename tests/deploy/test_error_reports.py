"""Passwords inside URLs never reach an error page, an error report or a log line."""

from __future__ import annotations

import sys

from django.test import Client, RequestFactory, override_settings
from django.views.debug import technical_500_response

from tests.deploy.processes import PRODUCTION_SECRET_KEY, manage, production_env

PASSWORD = "s3cr3t-h@rd-pw"
REDIS_URL = f"rediss://default:{PASSWORD}@cache.example.com:6380/0"
DATABASE_URL = f"postgres://arena:{PASSWORD}@db.example.com:5432/arena"


@override_settings(DEBUG=True, REDIS_URL=REDIS_URL, CELERY_BROKER_URL=REDIS_URL)
def test_bad_host_when_debug_page_shown_then_url_passwords_redacted(db: None) -> None:
    # The attack from the review: no login, a Host header the site does not serve, DEBUG on.
    response = Client().get(
        "/admin/",
        HTTP_HOST="attacker.example",
        HTTP_ACCEPT="text/html",
        # runserver copies the process environment into META: the page lists it.
        DATABASE_URL=DATABASE_URL,
    )

    page = response.content.decode()
    assert response.status_code == 400
    assert "DisallowedHost" in page  # the technical page, so the settings are listed
    assert "CELERY_BROKER_URL" in page
    assert PASSWORD not in page
    assert "rediss://default:********@cache.example.com:6380/0" in page
    assert "postgres://arena:********@db.example.com:5432/arena" in page


def _fail_to_connect() -> None:
    broker = REDIS_URL  # a local variable: the page shows every frame's locals
    raise ConnectionError(f"Error connecting to {broker}")


@override_settings(DEBUG=True, REDIS_URL=REDIS_URL)
def test_server_error_when_technical_page_then_message_locals_and_settings_redacted() -> None:
    request = RequestFactory().get("/admin/", HTTP_ACCEPT="text/html")
    try:
        _fail_to_connect()
    except ConnectionError:
        html = technical_500_response(request, *sys.exc_info()).content.decode()
    request = RequestFactory().get("/admin/", HTTP_ACCEPT="text/plain")
    try:
        _fail_to_connect()
    except ConnectionError:
        text = technical_500_response(request, *sys.exc_info()).content.decode()

    assert "_fail_to_connect" in html and "_fail_to_connect" in text
    assert PASSWORD not in html
    assert PASSWORD not in text
    assert "Error connecting to rediss://default:********@cache.example.com" in text


def test_exception_when_logged_in_production_then_url_password_redacted() -> None:
    code = (
        "import logging\n"
        "try:\n"
        f"    raise ConnectionError('Error connecting to {REDIS_URL}')\n"
        "except ConnectionError:\n"
        f"    logging.getLogger('trading.guard').exception('broker down: %s', '{DATABASE_URL}')\n"
    )
    env = production_env(SECRET_KEY=PRODUCTION_SECRET_KEY, ALLOWED_HOSTS="example.com")

    result = manage("shell", "--no-imports", "-c", code, env=env)

    assert result.returncode == 0, result.stderr
    logged = result.stdout + result.stderr
    assert "broker down: postgres://arena:********@db.example.com" in logged
    assert "Traceback" in logged
    assert "ConnectionError: Error connecting to rediss://default:********@cache" in logged
    assert PASSWORD not in logged
