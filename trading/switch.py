"""The kill switch: one service turns trading on or off, and every change is in the history."""

from __future__ import annotations

import logging

from django.db import transaction

from core.notify import alert_raise
from risk.services import rule_save
from trading.models import TradingSwitch

logger = logging.getLogger(__name__)


class SwitchReasonRequired(ValueError):
    """Trading was to be halted without a reason; nothing changed."""


@transaction.atomic
def trading_switch_set(*, enabled: bool, reason: str, actor: str) -> TradingSwitch:
    """Turn trading on or off; a no-op when it already is in that state.

    Halting needs a reason: it is what the next person reads on the dashboard. The change is
    recorded field by field as ``risk.RuleChange`` rows in the same transaction.
    """
    reason = reason.strip()
    if not enabled and not reason:
        raise SwitchReasonRequired("Say why trading is halted (a reason is required).")
    TradingSwitch.objects.get_or_create(id=1)
    # The row lock makes two concurrent callers agree on who changed it; the second returns early.
    switch = TradingSwitch.objects.select_for_update().get(id=1)
    if switch.enabled == enabled:
        return switch
    switch.enabled = enabled
    switch.reason = reason[:255]
    switch.changed_by = actor[:150]
    rule_save(instance=switch, actor=actor)
    logger.warning(
        "trading %s by %s: %s", "resumed" if enabled else "HALTED", actor, reason or "no reason"
    )
    if not enabled:
        transaction.on_commit(lambda: _alert_halted(reason=reason, actor=actor))
    return switch


def _alert_halted(*, reason: str, actor: str) -> None:
    # An alert is a courtesy: a missing or failing monitoring app must never undo a halt.
    try:
        alert_raise(
            key="trading.halted",
            severity="critical",
            message=f"Trading halted by {actor}: {reason}",
            repeat_seconds=0,
        )
    except Exception:
        logger.exception("could not raise the trading-halted alert")
