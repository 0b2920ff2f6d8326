from __future__ import annotations

from django.apps import AppConfig


class SignalsConfig(AppConfig):
    name = "signals"
    verbose_name = "Signals"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from trading.models import Strategy, Symbol

        # Scheduling plumbing, not business logic: the Strategy and Symbol admins live in the
        # trading app, and every save path (admin, loaddata, shell) must reach beat's table.
        # The sync runs after commit, so a rolled-back edit never reschedules anything.
        for model in (Strategy, Symbol):
            post_save.connect(_schedules_changed, sender=model, dispatch_uid=f"cycles-{model}")
        post_delete.connect(_schedules_changed, sender=Strategy, dispatch_uid="cycles-delete")


def _schedules_changed(sender: type, **kwargs: object) -> None:
    from signals.schedules import cycle_schedules_sync_on_commit

    cycle_schedules_sync_on_commit()
