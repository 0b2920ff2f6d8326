"""Telegram settings checked at start, the token kept out of every message, delivery retried."""

from __future__ import annotations

import logging
import time

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from monitoring.models import Alert
from monitoring.services import alert_deliver, alert_raise
from monitoring.telegram import TelegramError, telegram_config, telegram_send
from tests.support.fakes.telegram import TOKEN

pytestmark = pytest.mark.django_db

SECRET = "7000:do-not-leak-this-secret"

BAD_SETTINGS = [
    pytest.param({"TELEGRAM_BOT_TOKEN": SECRET + " "}, "TELEGRAM_BOT_TOKEN", id="token-space"),
    pytest.param({"TELEGRAM_BOT_TOKEN": SECRET + "\n"}, "TELEGRAM_BOT_TOKEN", id="token-newline"),
    pytest.param({"TELEGRAM_API_URL": "api.telegram.org"}, "TELEGRAM_API_URL", id="no-scheme"),
    pytest.param({"TELEGRAM_API_URL": "http://api.telegram.org"}, "https", id="plain-http"),
    pytest.param({"TELEGRAM_CHAT_ID": "my chat"}, "TELEGRAM_CHAT_ID", id="chat-id"),
]


def _configure(settings, **overrides: str) -> None:
    settings.TELEGRAM_BOT_TOKEN = SECRET
    settings.TELEGRAM_CHAT_ID = "4242"
    settings.TELEGRAM_API_URL = "https://api.telegram.org"
    for name, value in overrides.items():
        setattr(settings, name, value)


@pytest.mark.parametrize(("overrides", "named"), BAD_SETTINGS)
def test_check_when_telegram_setting_malformed_then_start_fails_naming_it_without_token(
    settings, overrides: dict[str, str], named: str
) -> None:
    _configure(settings, **overrides)

    with pytest.raises(SystemCheckError) as caught:
        call_command("check")

    assert named in str(caught.value)
    assert "do-not-leak" not in str(caught.value)


@pytest.mark.parametrize(("overrides", "named"), BAD_SETTINGS)
def test_alert_deliver_when_telegram_setting_malformed_then_failed_cleanly_and_token_never_shown(
    settings, caplog, overrides: dict[str, str], named: str
) -> None:
    _configure(settings, **overrides)
    alert = alert_raise(key="k", severity="critical", message="m")

    with caplog.at_level(logging.DEBUG):
        sent = alert_deliver(alert_id=alert.id)

    alert.refresh_from_db()
    assert sent is False
    assert alert.delivery == Alert.Delivery.FAILED
    assert named in alert.delivery_error
    assert "do-not-leak" not in alert.delivery_error + caplog.text


@pytest.mark.parametrize(
    "api_url",
    ["http://127.0.0.1:1/ bad", "http://127.0.0.1:99999", "http://[::1"],
    ids=["space-in-path", "bad-port", "bad-host"],
)
def test_telegram_send_when_url_cannot_be_built_then_telegram_error_without_token(
    api_url: str,
) -> None:
    from monitoring.telegram import TelegramConfig

    config = TelegramConfig(token=SECRET, chat_id="1", api_url=api_url)  # past the start check

    with pytest.raises(TelegramError) as caught:
        telegram_send(config=config, text="hello", timeout=1)

    assert "do-not-leak" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_telegram_send_when_server_redirects_then_refused_and_token_not_followed(
    telegram,
) -> None:
    from tests.support.fakes.telegram import FakeTelegram

    elsewhere = FakeTelegram().start()
    telegram.redirect_to = elsewhere.url
    try:
        with pytest.raises(TelegramError) as caught:
            telegram_send(config=telegram_config(), text="hello", timeout=2)

        assert elsewhere.requests == 0
        assert TOKEN not in str(caught.value)
    finally:
        elsewhere.stop()


@pytest.mark.django_db(transaction=True)
def test_alert_raise_when_broker_down_and_telegram_fails_twice_then_sent_once_by_retries(
    telegram, monkeypatch
) -> None:
    from arena.celery import app
    from monitoring import services

    monkeypatch.setattr(services, "DIRECT_DELIVERY_BACKOFF_SECONDS", (0.1, 0.1, 0.1))
    telegram.fail_next = 2
    saved = (app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool)
    app.conf.broker_url, app.conf.task_always_eager = "redis://127.0.0.1:1/0", False
    app._pool = app.amqp._producer_pool = None
    try:
        alert = alert_raise(key="sentinel.guard_stale", severity="critical", message="stale")
        deadline = time.monotonic() + 15
        while not telegram.messages and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the fake server, bounded by the deadline
    finally:
        app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool = saved

    assert [m["text"] for m in telegram.messages] == ["arena CRITICAL: stale"]
    assert telegram.requests == 3
    alert.refresh_from_db()
    assert alert.delivery == Alert.Delivery.SENT
