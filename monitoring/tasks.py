"""Celery tasks of the monitoring app: thin wrappers around its services."""

from __future__ import annotations

from celery import shared_task

from monitoring.sentinel import sentinel_pass
from monitoring.services import alert_deliver, alert_delivery_give_up
from monitoring.telegram import TelegramError

# Telegram retries: 15 s, 30 s, 1 min ... capped at 10 min; about 1.5 h before giving up.
DELIVERY_MAX_RETRIES = 12
DELIVERY_BACKOFF_CAP_SECONDS = 600


@shared_task(
    name="monitoring.tasks.sentinel_pass_task",
    ignore_result=True,
    soft_time_limit=240,
    time_limit=270,
    expires=300,
)
def sentinel_pass_task() -> None:
    """One sentinel pass: TP/SL presence, PnL drift, stale heartbeats, reachability."""

    sentinel_pass()


@shared_task(
    bind=True,
    name="monitoring.tasks.alert_deliver_task",
    ignore_result=True,
    max_retries=DELIVERY_MAX_RETRIES,
    soft_time_limit=30,
    time_limit=45,
)
def alert_deliver_task(self, alert_id: int) -> None:
    """Send one stored alert to Telegram; retried with backoff while Telegram is unavailable."""

    try:
        alert_deliver(alert_id=alert_id)
    except TelegramError as exc:
        if self.request.retries >= self.max_retries:
            alert_delivery_give_up(alert_id=alert_id, error=str(exc))
            return
        countdown = min(DELIVERY_BACKOFF_CAP_SECONDS, 15 * 2**self.request.retries)
        if exc.retry_after:
            countdown = max(countdown, int(exc.retry_after))
        raise self.retry(exc=exc, countdown=countdown) from None
