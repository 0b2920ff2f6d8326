"""Beat's schedules in the admin: system schedules untouchable, every action permitted and kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from risk.models import RuleChange
from signals.schedules import cycle_schedules_sync

GUARD = "guard: TP/SL on every open position"
SENTINEL = "sentinel: health checks and alerts"


@pytest.fixture
def memory_broker() -> Iterator[object]:
    """Tasks are published to an in-memory broker: the test counts what was queued."""
    from arena.celery import app

    saved = (app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool)
    app.conf.broker_url, app.conf.task_always_eager = "memory://", False
    app._pool = app.amqp._producer_pool = None
    try:
        yield app
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app.conf.task_always_eager, app._pool, app.amqp._producer_pool = saved


def _queued(app: object, queue: str) -> int:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        return channel.queue_declare(queue=queue, passive=False, durable=True).message_count


def _staff(*codenames: str) -> Client:
    user = User.objects.create_user("staffer", password="pw-staffer-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def _action(client: Client, action: str, *tasks: PeriodicTask):
    return client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": action, "_selected_action": [t.pk for t in tasks]},
        follow=True,
    )


@pytest.fixture
def schedules(defaults: None) -> dict[str, PeriodicTask]:
    cycle_schedules_sync()
    return {t.name: t for t in PeriodicTask.objects.all()}


@pytest.mark.parametrize("action", ["disable_tasks", "toggle_tasks", "enable_tasks"])
def test_schedule_action_when_user_may_only_view_then_refused_and_nothing_changed(
    schedules: dict[str, PeriodicTask], action: str
) -> None:
    client = _staff("view_periodictask")
    before = {t.name: t.enabled for t in PeriodicTask.objects.all()}

    _action(client, action, schedules[GUARD], schedules[SENTINEL], schedules["cycle: BNBUSDT"])

    assert {t.name: t.enabled for t in PeriodicTask.objects.all()} == before
    assert not RuleChange.objects.exists()


def test_run_tasks_when_user_may_only_view_then_no_cycle_queued(
    schedules: dict[str, PeriodicTask], memory_broker: object
) -> None:
    client = _staff("view_periodictask")
    queued_before = _queued(memory_broker, "cycles")

    _action(client, "run_tasks", schedules["cycle: BTCUSDT"])

    assert _queued(memory_broker, "cycles") == queued_before
    assert not RuleChange.objects.exists()


def test_schedule_changelist_when_user_may_only_view_then_no_action_offered(
    schedules: dict[str, PeriodicTask],
) -> None:
    client = _staff("view_periodictask")

    response = client.get("/admin/django_celery_beat/periodictask/")

    assert response.status_code == 200
    assert 'name="action"' not in response.content.decode()


@pytest.mark.parametrize("action", ["disable_tasks", "toggle_tasks", "run_tasks"])
def test_schedule_action_when_guard_or_sentinel_selected_then_refused_even_with_change_permission(
    schedules: dict[str, PeriodicTask], memory_broker: object, action: str
) -> None:
    client = _staff("view_periodictask", "change_periodictask")
    queued_before = _queued(memory_broker, "guard")

    response = _action(client, action, schedules[GUARD], schedules[SENTINEL])

    assert "is a system schedule" in response.content.decode()
    assert PeriodicTask.objects.get(name=GUARD).enabled is True
    assert PeriodicTask.objects.get(name=SENTINEL).enabled is True
    assert _queued(memory_broker, "guard") == queued_before
    assert not RuleChange.objects.exists()


def test_guard_schedule_change_when_posted_with_change_permission_then_forbidden(
    schedules: dict[str, PeriodicTask],
) -> None:
    client = _staff("view_periodictask", "change_periodictask", "delete_periodictask")
    guard = schedules[GUARD]

    edit = client.post(
        f"/admin/django_celery_beat/periodictask/{guard.pk}/change/",
        {"name": guard.name, "task": guard.task, "enabled": "", "interval": guard.interval_id},
    )
    delete = client.post(
        f"/admin/django_celery_beat/periodictask/{guard.pk}/delete/", {"post": "yes"}
    )

    assert edit.status_code == 403
    assert delete.status_code == 403
    assert PeriodicTask.objects.get(pk=guard.pk).enabled is True


def test_guard_interval_when_edited_with_change_permission_then_forbidden(
    schedules: dict[str, PeriodicTask],
) -> None:
    client = _staff("view_intervalschedule", "change_intervalschedule")
    interval = schedules[GUARD].interval

    response = client.post(
        f"/admin/django_celery_beat/intervalschedule/{interval.pk}/change/",
        {"every": 100000000000000, "period": "seconds"},
    )

    assert response.status_code == 403
    assert IntervalSchedule.objects.get(pk=interval.pk).every == 5


def test_interval_add_when_longer_than_a_week_then_refused(defaults: None) -> None:
    client = _staff("view_intervalschedule", "add_intervalschedule")

    response = client.post(
        "/admin/django_celery_beat/intervalschedule/add/",
        {"every": 100000000000000, "period": "seconds"},
    )

    assert response.status_code == 200
    assert "At most 604800 seconds" in response.content.decode()
    assert not IntervalSchedule.objects.filter(every=100000000000000).exists()


def test_schedule_action_when_user_may_change_other_schedule_then_done_and_recorded(
    schedules: dict[str, PeriodicTask],
) -> None:
    interval = IntervalSchedule.objects.create(every=3600, period=IntervalSchedule.SECONDS)
    other = PeriodicTask.objects.create(
        name="housekeeping", task="dashboard.tasks.equity_snapshot_prune", interval=interval
    )
    client = _staff("view_periodictask", "change_periodictask")

    _action(client, "disable_tasks", other)

    assert PeriodicTask.objects.get(pk=other.pk).enabled is False
    change = RuleChange.objects.get(model="django_celery_beat.periodictask")
    assert (change.object_repr.startswith("housekeeping"), change.field, change.new_value) == (
        True,
        "enabled",
        "False",
    )
    assert change.changed_by == "staffer"


@pytest.mark.parametrize(
    "task", ["trading.tasks.guard_pass_task", "trading.tasks.trade_cycle_task"]
)
def test_schedule_add_when_task_is_managed_then_refused(
    schedules: dict[str, PeriodicTask], task: str
) -> None:
    client = _staff("view_periodictask", "add_periodictask")
    count = PeriodicTask.objects.count()

    response = client.post(
        "/admin/django_celery_beat/periodictask/add/",
        {
            "name": "my own guard",
            "regtask": task,
            "task": task,
            "enabled": "on",
            "interval": schedules[GUARD].interval_id,
            "args": "[1]",
            "kwargs": "{}",
            "headers": "{}",
            "priority": "",
        },
    )

    assert response.status_code == 200
    assert "scheduled by the system" in response.content.decode()
    assert PeriodicTask.objects.count() == count
