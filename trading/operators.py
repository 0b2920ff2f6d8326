"""The "operators" group: who may press the red buttons without being a superuser."""

from __future__ import annotations

from typing import Any

OPERATORS_GROUP = "operators"
# What an operator sees in the admin besides the red buttons: the trading records, read only.
VIEWED_MODELS = ("position", "order", "symbol", "strategy", "tradingswitch", "tradeevent")


def operators_group_ensure(*, apps: Any) -> None:
    """Create the group with ``trading.emergency_close`` and the view permissions it needs.

    ``apps`` is a migration's historical registry or ``django.apps.apps``; safe to run twice.
    """
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after the whole migrate run; the group needs them now.
    trading = apps.get_app_config("trading")
    models_module = getattr(trading, "models_module", None)
    trading.models_module = models_module or True
    create_permissions(trading, apps=apps, verbosity=0)
    trading.models_module = models_module

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    group, _ = group_model.objects.get_or_create(name=OPERATORS_GROUP)
    codenames = ["emergency_close", *(f"view_{model}" for model in VIEWED_MODELS)]
    group.permissions.add(
        *permission_model.objects.filter(content_type__app_label="trading", codename__in=codenames)
    )
