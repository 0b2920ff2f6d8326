"""The "operators" group: who may press the red buttons without being a superuser."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

OPERATORS_GROUP = "operators"
# What an operator reads besides pressing the red buttons: positions, orders, rules, alerts and
# the dashboard's data, read only.
VIEWED_MODELS = {
    "trading": (
        "position",
        "order",
        "symbol",
        "strategy",
        "tradingswitch",
        "tradeevent",
        "protectionstate",
    ),
    "risk": ("riskprofile", "rulechange"),
    "core": ("heartbeat",),
    "monitoring": ("alert",),
    "dashboard": ("equitysnapshot",),
}


def operators_group_ensure(*, apps: Any) -> None:
    """Create the group with ``trading.emergency_close`` and the view permissions it needs.

    ``apps`` is a migration's historical registry or ``django.apps.apps``; safe to run twice.
    """
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after the whole migrate run; the group needs them now.
    for label in VIEWED_MODELS:
        try:
            app_config = apps.get_app_config(label)
        except LookupError:  # an earlier migration: the app has no models yet
            continue
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    group, _ = group_model.objects.get_or_create(name=OPERATORS_GROUP)
    wanted = Q(content_type__app_label="trading", codename="emergency_close")
    for label, models in VIEWED_MODELS.items():
        wanted |= Q(content_type__app_label=label, codename__in=[f"view_{m}" for m in models])
    group.permissions.add(*permission_model.objects.filter(wanted))
