"""The Celery application: configuration comes from Django settings (CELERY_*)."""

from __future__ import annotations

import os
import signal

from celery import Celery
from celery.signals import worker_process_init, worker_ready

import arena.broker  # noqa: F401 - registers the embedded broker's transport

# Production unless chosen otherwise: `make run` chooses arena.settings.local, pytest
# arena.settings.test. This module is imported first by every process (arena/__init__.py).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings.production")

app = Celery("arena")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _reconcile_on_start(**kwargs: object) -> None:
    """Compare the database with the exchange whenever a worker starts (in the background)."""
    from trading.reconcile import reconcile_on_worker_ready

    reconcile_on_worker_ready(**kwargs)


@worker_process_init.connect
def _leave_sigterm_to_the_main_process(**kwargs: object) -> None:
    """Pool processes ignore SIGTERM; the main process's warm shutdown ends them.

    Heroku-style hosts (and honcho) send SIGTERM to every process of the dyno at once: a pool
    process would die in the middle of its task (an order sent, its record not yet written).
    The main process instead stops taking tasks, lets the running ones finish, then closes the
    pool; the host's SIGKILL after its grace period and the tasks' hard time limits still apply.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
