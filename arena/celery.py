"""The Celery application: configuration comes from Django settings (CELERY_*)."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings.local")

app = Celery("arena")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _create_embedded_broker_folders(sender: Celery, **kwargs: object) -> None:
    """kombu's filesystem transport needs its folders to exist before the first message."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@worker_ready.connect
def _reconcile_on_start(**kwargs: object) -> None:
    """Compare the database with the exchange whenever a worker starts (in the background)."""
    from trading.reconcile import reconcile_on_worker_ready

    reconcile_on_worker_ready(**kwargs)
