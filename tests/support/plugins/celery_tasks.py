"""Celery running the arena's tasks in the test's process, or queueing them in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def celery_eager() -> Iterator[None]:
    """Tasks queued on commit run at once in this process (retries too, without waiting)."""
    from arena.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, False
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = previous


@pytest.fixture
def celery_memory_broker() -> Iterator[None]:
    """Tasks are published to an in-memory broker, as to Redis in production: nothing runs
    them in this process unless the test does."""
    from arena.celery import app

    saved = (app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool)
    app.conf.broker_url, app.conf.task_always_eager = "memory://", False
    app._pool = app.amqp._producer_pool = None
    try:
        yield
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool = saved
