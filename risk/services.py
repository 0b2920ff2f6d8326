"""Writes to the rules: every change keeps who, when, and the old and new values."""

from __future__ import annotations

from django.db import models, transaction

from risk.models import RiskProfile, RuleChange

# Bookkeeping fields that change on every save and say nothing about the rule itself.
_UNTRACKED_FIELDS = {"updated_at", "changed_at"}


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
