"""``loaddata`` that validates the rules it loads and records them in the rule history.

Django's loaddata saves raw rows: no ``clean()``, no history, so a fixture with leverage 500 and
risk 250 % was loaded and traded on. This command loads as Django does, then, still inside its
transaction, validates every loaded rule with the same ``full_clean`` as the admin, after the
whole fixture is in (so rules that refer to each other are judged together). One invalid rule
fails the command and the transaction leaves nothing loaded.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.management.commands import loaddata

from risk.services import RULE_MODELS, rules_loaded_validate


class Command(loaddata.Command):
    help = (
        loaddata.Command.help
        + " Rules (risk profiles, symbols, strategies, schedules...) are validated and recorded."
    )

    def loaddata(self, fixture_labels: Any) -> None:
        self.loaded_rules: list[tuple[Any, Any]] = []
        super().loaddata(fixture_labels)
        try:
            rules_loaded_validate(
                loaded=self.loaded_rules, actor=f"loaddata {' '.join(fixture_labels)}"[:150]
            )
        except ValidationError as e:
            raise CommandError(
                f"Fixture refused, nothing loaded: {'; '.join(e.messages)}"
            ) from None

    def save_obj(self, obj: Any) -> bool:
        instance = obj.object
        is_rule = instance._meta.label_lower in RULE_MODELS
        previous = None
        if is_rule and instance.pk is not None:
            previous = type(instance).objects.using(self.using).filter(pk=instance.pk).first()
        saved = super().save_obj(obj)
        if saved and is_rule:
            self.loaded_rules.append((previous, instance))
        return saved
