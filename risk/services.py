"""Writes to the rules (each change keeps who, when, old and new value); the post-trade check."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import models, transaction

from risk.checks import check_schedule_interval
from risk.models import RiskProfile, RuleChange

logger = logging.getLogger(__name__)

# Bookkeeping fields that change on every save and say nothing about the rule itself.
_UNTRACKED_FIELDS = {
    "updated_at",
    "changed_at",
    "filters_synced_at",
    # django-celery-beat's bookkeeping on PeriodicTask rows.
    "date_changed",
    "last_run_at",
    "total_run_count",
}


def _field_value(instance: models.Model, field: models.Field) -> str:
    value = getattr(instance, field.attname)
    return "" if value is None else str(value)


def rule_save(*, instance: models.Model, actor: str) -> list[RuleChange]:
    """Validate and save a rule, recording each changed field; nothing is saved if invalid.

    Raises ``ValidationError`` from the model's ``full_clean`` with the model's own messages.
    """
    instance.full_clean()
    with transaction.atomic():
        previous = None
        if instance.pk is not None:
            previous = type(instance).objects.select_for_update().filter(pk=instance.pk).first()
        if isinstance(instance, RiskProfile) and instance.is_active:
            # Exactly one active profile: activating one deactivates the others.
            others = RiskProfile.objects.filter(is_active=True).exclude(pk=instance.pk)
            for other in others:
                other.is_active = False
                rule_save(instance=other, actor=actor)
        instance.save()
        return _record_changes(previous=previous, current=instance, actor=actor)


def _record_changes(
    *, previous: models.Model | None, current: models.Model, actor: str
) -> list[RuleChange]:
    label = current._meta.label_lower
    changes = []
    for field in current._meta.concrete_fields:
        if field.primary_key or field.name in _UNTRACKED_FIELDS:
            continue
        new = _field_value(current, field)
        old = "" if previous is None else _field_value(previous, field)
        if previous is not None and old == new:
            continue
        if previous is None and new == "":
            continue
        changes.append(
            RuleChange(
                model=label,
                object_id=str(current.pk),
                object_repr=str(current)[:200],
                field=field.name,
                old_value=old,
                new_value=new,
                changed_by=actor,
            )
        )
    return RuleChange.objects.bulk_create(changes)


def rule_event_record(
    *, instance: models.Model, field: str, old_value: str, new_value: str, actor: str
) -> RuleChange:
    """Record one action on a rule that is not a field change (a deletion, a manual run)."""
    return RuleChange.objects.create(
        model=instance._meta.label_lower,
        object_id=str(instance.pk),
        object_repr=str(instance)[:200],
        field=field[:64],
        old_value=old_value,
        new_value=new_value,
        changed_by=actor[:150],
    )


@transaction.atomic
def rule_delete(*, instance: models.Model, actor: str) -> RuleChange:
    """Delete a rule and keep what it was in the history (``field`` "deleted", old = its values).

    Raises ``ProtectedError`` (nothing deleted) while other records still refer to it.
    """
    values = {
        f.name: _field_value(instance, f)
        for f in instance._meta.concrete_fields
        if not f.primary_key and f.name not in _UNTRACKED_FIELDS
    }
    change = rule_event_record(
        instance=instance,
        field="deleted",
        old_value=", ".join(f"{k}={v}" for k, v in values.items()),
        new_value="",
        actor=actor,
    )
    instance.delete()
    return change


# The rules a fixture may carry, validated and recorded when loaded (``manage.py loaddata``).
RULE_MODELS = {
    "risk.riskprofile",
    "trading.symbol",
    "trading.strategy",
    "trading.tradingswitch",
    "monitoring.monitoringsettings",
    "django_celery_beat.periodictask",
    "django_celery_beat.intervalschedule",
}


def rules_loaded_validate(
    *, loaded: list[tuple[models.Model | None, models.Model]], actor: str
) -> None:
    """Validate rules just written raw (a fixture), then record each overwritten one's changes.

    Every rule is checked after all are written, so cross-rules see the whole fixture. Raises
    ``ValidationError`` naming each invalid rule; the caller's transaction must then roll back.
    """

    problems: list[str] = []
    for _, instance in loaded:
        current = type(instance).objects.get(pk=instance.pk)
        try:
            current.full_clean()
            if current._meta.label_lower == "django_celery_beat.intervalschedule":
                refusal = check_schedule_interval(every=current.every, period=current.period)
                if refusal:
                    raise ValidationError({"every": refusal})
        except ValidationError as e:
            fields = e.message_dict if hasattr(e, "error_dict") else {"": e.messages}
            for field, messages in fields.items():
                where = f"{current._meta.label} {current}" + (f" {field}" if field else "")
                problems.extend(f"{where}: {message}" for message in messages)
    if problems:
        raise ValidationError(problems)
    # A rule the fixture created is the starting state (as on a fresh database); a rule it
    # overwrote is a change like any other, recorded field by field.
    for previous, instance in loaded:
        if previous is not None:
            _record_changes(
                previous=previous, current=type(instance).objects.get(pk=instance.pk), actor=actor
            )
