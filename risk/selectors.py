"""Reads of the risk rules."""

from __future__ import annotations

from django.db import models

from risk.models import RiskProfile, RuleChange


class NoActiveRiskProfile(Exception):
    """No risk profile is active: the bot does not trade until an operator activates one."""


def risk_profile_for_symbol(*, symbol) -> RiskProfile:
    """Return the symbol's own profile, else the active one."""
    if symbol.risk_profile_id is not None:
        return symbol.risk_profile
    profile = RiskProfile.objects.filter(is_active=True).first()
    if profile is None:
        raise NoActiveRiskProfile("No active risk profile: activate one in the admin.")
    return profile


def rule_history(*, instance: models.Model, limit: int = 20) -> list[RuleChange]:
    """The latest recorded changes of one rule, newest first."""
    return list(
        RuleChange.objects.filter(model=instance._meta.label_lower, object_id=str(instance.pk))[
            :limit
        ]
    )
