"""Alerts: stored, deduplicated by key within a window, sent to Telegram in the background."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from core.models import MonitoringSettings
from monitoring.models import Alert
from monitoring.services import alert_deliver, alert_raise, alerts_acknowledge, alerts_requeue_lost
from monitoring.tasks import alert_deliver_task
from monitoring.telegram import TelegramError

pytestmark = pytest.mark.django_db


def test_alert_raise_when_same_key_repeats_within_window_then_telegram_gets_it_once(
    telegram, celery_eager, django_capture_on_commit_callbacks
):
    # Arrange
    MonitoringSettings.objects.create(id=1, alert_repeat_seconds=900)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        first = alert_raise(key="guard.gave_up.BTCUSDT.SL", severity="critical", message="one")
        repeats = [
            alert_raise(key="guard.gave_up.BTCUSDT.SL", severity="critical", message="again")
            for _ in range(3)
        ]
        other = alert_raise(key="sentinel.guard_stale", severity="critical", message="stale")

    # Assert
    assert first is not None and other is not None
    assert repeats == [None, None, None]
    assert [m["text"] for m in telegram.messages] == [
        "arena CRITICAL: one",
        "arena CRITICAL: stale",
    ]
    assert {m["chat_id"] for m in telegram.messages} == {"4242"}
    assert set(Alert.objects.values_list("delivery", flat=True)) == {Alert.Delivery.SENT}


def test_alert_raise_when_window_has_passed_then_it_is_raised_again(telegram, celery_eager):
    # Arrange
    MonitoringSettings.objects.create(id=1, alert_repeat_seconds=60)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        alert_raise(key="k", severity="warning", message="first")

        # Act
        clock.shift(timedelta(seconds=59))
        within = alert_raise(key="k", severity="warning", message="within")
        clock.shift(timedelta(seconds=2))
        after = alert_raise(key="k", severity="warning", message="after")

    # Assert
    assert within is None
    assert after is not None and after.message == "after"
    assert Alert.objects.count() == 2


def test_alert_deliver_task_when_telegram_fails_twice_then_retried_and_sent_once(
    telegram, celery_eager, django_capture_on_commit_callbacks
):
    # Arrange
    telegram.fail_next = 2

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        alert = alert_raise(key="k", severity="critical", message="stop missing")

    # Assert
    alert.refresh_from_db()
    assert alert.delivery == Alert.Delivery.SENT
    assert alert.delivery_attempts == 3
    assert telegram.requests == 3
    assert [m["text"] for m in telegram.messages] == ["arena CRITICAL: stop missing"]


def test_alert_deliver_task_when_telegram_stays_down_then_marked_failed_after_retries(
    telegram, celery_eager
):
    # Arrange
    telegram.fail_next = 1000
    alert = alert_raise(key="k", severity="critical", message="m")

    # Act
    alert_deliver_task.apply(args=[alert.id])

    # Assert
    alert.refresh_from_db()
    assert alert.delivery == Alert.Delivery.FAILED
    assert alert.delivery_attempts == alert_deliver_task.max_retries + 1
    assert "502" in alert.delivery_error
    assert telegram.messages == []


def test_alert_deliver_when_already_sent_then_nothing_is_sent_again(telegram):
    # Arrange
    alert = alert_raise(key="k", severity="info", message="m")
    assert alert_deliver(alert_id=alert.id) is True

    # Act
    again = alert_deliver(alert_id=alert.id)

    # Assert
    assert again is False
    assert len(telegram.messages) == 1


def test_alert_deliver_when_token_is_wrong_then_failed_without_retry_and_token_not_logged(
    telegram, settings, caplog
):
    # Arrange
    settings.TELEGRAM_BOT_TOKEN = "999:wrong-secret-token"
    alert = alert_raise(key="k", severity="info", message="m")

    # Act
    with caplog.at_level(logging.DEBUG):
        sent = alert_deliver(alert_id=alert.id)

    # Assert
    alert.refresh_from_db()
    assert sent is False
    assert alert.delivery == Alert.Delivery.FAILED
    assert "401" in alert.delivery_error
    assert "wrong-secret-token" not in caplog.text
    assert "wrong-secret-token" not in alert.delivery_error


def test_telegram_error_when_unreachable_then_message_has_no_token(settings):
    # Arrange: nothing listens on port 9 of localhost
    settings.TELEGRAM_BOT_TOKEN = "1:very-secret"
    settings.TELEGRAM_CHAT_ID = "1"
    settings.TELEGRAM_API_URL = "http://127.0.0.1:9"
    alert = alert_raise(key="k", severity="info", message="m")

    # Act
    with pytest.raises(TelegramError) as caught:
        alert_deliver(alert_id=alert.id)

    # Assert
    assert caught.value.temporary is True
    assert "very-secret" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_alert_raise_when_no_token_then_stored_only_and_logged_once(settings, caplog):
    # Arrange
    settings.TELEGRAM_BOT_TOKEN = ""
    import monitoring.services as services

    services._unconfigured_logged = False

    # Act
    with caplog.at_level(logging.INFO, logger="monitoring.services"):
        first = alert_raise(key="a", severity="warning", message="m1")
        second = alert_raise(key="b", severity="warning", message="m2")

    # Assert
    assert first.delivery == second.delivery == Alert.Delivery.NOT_CONFIGURED
    assert caplog.text.count("Telegram is not configured") == 1


def test_alerts_acknowledge_when_operator_acks_then_recorded_with_actor():
    # Arrange
    alert = alert_raise(key="k", severity="warning", message="m")

    # Act
    count = alerts_acknowledge(alert_ids=[alert.id], actor="trader")
    again = alerts_acknowledge(alert_ids=[alert.id], actor="someone-else")

    # Assert
    alert.refresh_from_db()
    assert (count, again) == (1, 0)
    assert alert.acknowledged_by == "trader"
    assert alert.acknowledged_at is not None


def test_alerts_requeue_lost_when_task_never_ran_then_delivered(telegram, celery_eager):
    # Arrange: stored, but its task was lost (the test database never commits)
    with time_machine.travel(timezone.now() - timedelta(minutes=5)):
        alert = alert_raise(key="k", severity="critical", message="lost")

    # Act
    requeued = alerts_requeue_lost()

    # Assert
    alert.refresh_from_db()
    assert requeued == 1
    assert alert.delivery == Alert.Delivery.SENT
    assert len(telegram.messages) == 1


@pytest.mark.django_db(transaction=True)
def test_alert_raise_when_broker_unreachable_then_sent_directly_to_telegram(telegram):
    # Arrange: a broker address where nothing listens, as when Redis is down.
    from arena.celery import app

    saved = (app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool)
    app.conf.broker_url, app.conf.task_always_eager = "redis://127.0.0.1:1/0", False
    app._pool = app.amqp._producer_pool = None
    try:
        # Act
        alert = alert_raise(key="sentinel.guard_stale", severity="critical", message="stale")
        deadline = time.monotonic() + 10
        while not telegram.messages and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the fake server, bounded by the deadline
    finally:
        app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool = saved

    # Assert
    assert [m["text"] for m in telegram.messages] == ["arena CRITICAL: stale"]
    alert.refresh_from_db()
    assert alert.delivery == Alert.Delivery.SENT
