"""Writes of the monitoring app: alerts and their delivery, operator actions.

Alerts are stored first and delivered to Telegram afterwards by a Celery task enqueued on
commit, so a slow or dead Telegram never holds up the guard or a trade.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.selectors import monitoring_settings
from monitoring.models import Alert, AlertThrottle
from monitoring.telegram import TelegramError, telegram_config, telegram_send
from trading.models import ProtectionState

logger = logging.getLogger(__name__)

# A delivery attempt holds its alert this long, so two workers never send the same alert at once.
DELIVERY_CLAIM_SECONDS = 60
# A pending alert nobody has tried for this long lost its task (broker down, worker died).
DELIVERY_LOST_AFTER = timedelta(minutes=2)

_SEVERITY_LEVELS = {
    Alert.Severity.INFO: logging.INFO,
    Alert.Severity.WARNING: logging.WARNING,
    Alert.Severity.CRITICAL: logging.ERROR,
}
_unconfigured_logged = False


# --- alerts ----------------------------------------------------------------------------------
def alert_raise(
    *,
    key: str,
    severity: str,
    message: str,
    symbol: object | None = None,
    repeat_seconds: int | None = None,
) -> Alert | None:
    """Store an alert and queue it for Telegram, unless ``key`` was raised within the window.

    Returns the new alert, or None when it was suppressed as a repeat. The window is the
    ``alert_repeat_seconds`` rule unless ``repeat_seconds`` is given.
    """
    global _unconfigured_logged
    if repeat_seconds is None:
        repeat_seconds = monitoring_settings().alert_repeat_seconds
    now = timezone.now()
    config = telegram_config()
    with transaction.atomic():
        # Claim the key like a lease: only one raiser per window gets the row updated.
        claimed = AlertThrottle.objects.filter(
            key=key, last_raised_at__lte=now - timedelta(seconds=repeat_seconds)
        ).update(last_raised_at=now)
        if not claimed:
            _, created = AlertThrottle.objects.get_or_create(
                key=key, defaults={"last_raised_at": now}
            )
            if not created:
                return None
        alert = Alert.objects.create(
            key=key,
            severity=severity,
            message=message,
            symbol=symbol,
            delivery=Alert.Delivery.PENDING if config.configured else Alert.Delivery.NOT_CONFIGURED,
        )
        if config.configured:
            alert_id = alert.id
            transaction.on_commit(lambda: _delivery_enqueue(alert_id=alert_id))
    logger.log(_SEVERITY_LEVELS.get(severity, logging.WARNING), "[Alert] %s: %s", key, message)
    if not config.configured and not _unconfigured_logged:
        _unconfigured_logged = True
        logger.info(
            "Telegram is not configured (TELEGRAM_BOT_TOKEN/CHAT_ID): alerts are stored only"
        )
    return alert


def _delivery_enqueue(*, alert_id: int) -> None:
    from monitoring.tasks import alert_deliver_task

    try:
        # retry=False: with the broker down, publishing must fail fast rather than stall the
        # caller (the guard); the sentinel re-queues alerts whose task never ran.
        alert_deliver_task.apply_async(args=[alert_id], retry=False)
    except Exception as exc:
        # The broker is down, which is when an operator most needs to hear: send it from a
        # background thread of this process (never blocking the caller); the delivery claim
        # keeps a later re-queue from sending it twice.
        logger.warning("Alert %s not queued (%s): sending it directly", alert_id, exc)
        threading.Thread(
            target=_deliver_directly, args=(alert_id,), name=f"alert-{alert_id}", daemon=True
        ).start()


# Direct delivery (broker down): a few quick tries in the background thread before leaving the
# alert to the sentinel's re-queue.
DIRECT_DELIVERY_BACKOFF_SECONDS = (2, 5, 15)


def _deliver_directly(alert_id: int) -> None:
    from django.db import connection

    try:
        for wait in (*DIRECT_DELIVERY_BACKOFF_SECONDS, None):
            try:
                alert_deliver(alert_id=alert_id)
                return
            except TelegramError as exc:
                if wait is None:
                    raise
                logger.warning("Alert %s: %s; trying again in %ss", alert_id, exc, wait)
                time.sleep(wait)  # a background thread of its own: nobody waits on it
    except Exception:
        logger.exception(
            "Alert %s: direct delivery failed; re-queued when the broker is back", alert_id
        )
    finally:
        connection.close()  # this thread's own connection


def alert_deliver(*, alert_id: int) -> bool:
    """Send one pending alert to Telegram. True when sent now; False when there was nothing to
    do (already sent, given up, another worker on it, or a permanent refusal, now recorded).

    Raises ``TelegramError`` (temporary) for the caller to retry later.
    """
    now = timezone.now()
    claimed = (
        Alert.objects.filter(id=alert_id, delivery=Alert.Delivery.PENDING)
        .filter(Q(delivery_claimed_until__isnull=True) | Q(delivery_claimed_until__lte=now))
        .update(
            delivery_claimed_until=now + timedelta(seconds=DELIVERY_CLAIM_SECONDS),
            delivery_attempts=F("delivery_attempts") + 1,
        )
    )
    if not claimed:
        return False
    alert = Alert.objects.select_related("symbol").get(id=alert_id)
    config = telegram_config()
    if not config.configured:
        Alert.objects.filter(id=alert_id).update(
            delivery=Alert.Delivery.NOT_CONFIGURED, delivery_claimed_until=None
        )
        return False
    try:
        telegram_send(config=config, text=alert_text(alert=alert))
    except TelegramError as exc:
        if exc.temporary:
            Alert.objects.filter(id=alert_id).update(
                delivery_claimed_until=None, delivery_error=str(exc)[:255]
            )
            raise
        Alert.objects.filter(id=alert_id).update(
            delivery=Alert.Delivery.FAILED, delivery_claimed_until=None, delivery_error=str(exc)
        )
        logger.error("Alert %s not delivered, Telegram refused it: %s", alert_id, exc)
        return False
    Alert.objects.filter(id=alert_id).update(
        delivery=Alert.Delivery.SENT,
        delivered_at=timezone.now(),
        delivery_claimed_until=None,
        delivery_error="",
    )
    return True


def alert_delivery_give_up(*, alert_id: int, error: str) -> None:
    """Mark a pending alert as failed after the delivery task ran out of retries."""
    updated = Alert.objects.filter(id=alert_id, delivery=Alert.Delivery.PENDING).update(
        delivery=Alert.Delivery.FAILED, delivery_claimed_until=None, delivery_error=error[:255]
    )
    if updated:
        logger.error("Alert %s not delivered after retries: %s", alert_id, error)


def alerts_requeue_lost() -> int:
    """Queue again the pending alerts whose delivery task seems lost; return how many."""
    now = timezone.now()
    lost = list(
        Alert.objects.filter(
            delivery=Alert.Delivery.PENDING, created_at__lte=now - DELIVERY_LOST_AFTER
        )
        .filter(Q(delivery_claimed_until__isnull=True) | Q(delivery_claimed_until__lte=now))
        .values_list("id", flat=True)[:100]
    )
    for alert_id in lost:
        _delivery_enqueue(alert_id=alert_id)
    return len(lost)


def alert_text(*, alert: Alert) -> str:
    """The Telegram message of an alert."""
    where = f" {alert.symbol.name}" if alert.symbol_id else ""
    return f"arena {alert.severity.upper()}{where}: {alert.message}"


def alerts_acknowledge(*, alert_ids: list[int], actor: str) -> int:
    """Mark alerts as seen by ``actor``; alerts acknowledged before keep their first record."""
    count = Alert.objects.filter(id__in=alert_ids, acknowledged_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=actor[:150]
    )
    if count:
        logger.info("%s acknowledged %d alert(s)", actor, count)
    return count


# --- operator actions on the guard's memory --------------------------------------------------
@transaction.atomic
def protection_clear(*, state_ids: list[int], actor: str) -> int:
    """Let the guard try again at once where it gave up (or is waiting out its debounce)."""
    states = list(ProtectionState.objects.select_for_update().filter(id__in=state_ids))
    for state in states:
        if state.gave_up_at:
            logger.info(
                "[Guard] %s %s: give-up cleared by %s (was: %s)",
                state.symbol_id and state.symbol,
                state.kind,
                actor,
                state.reason,
            )
        state.gave_up_at = None
        state.next_attempt_at = None
        state.rules_version = ""
        state.error_code = None
        state.reason = f"Cleared by {actor} at {timezone.now():%Y-%m-%d %H:%M:%S} UTC"[:255]
        state.save(
            update_fields=[
                "gave_up_at",
                "next_attempt_at",
                "rules_version",
                "error_code",
                "reason",
                "updated_at",
            ]
        )
    return len(states)
