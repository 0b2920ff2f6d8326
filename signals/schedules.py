"""Trade-cycle schedules in django-celery-beat, derived from the strategies.

The Strategy (interval) and the Symbol (enabled) are the source of truth; each has one
PeriodicTask ``cycle: <SYMBOL>`` that this module creates, updates or disables to match. Beat's
DatabaseScheduler notices ``PeriodicTasks.last_update`` and reloads, so a change takes effect
without a restart.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from trading.models import Strategy

logger = logging.getLogger(__name__)

CYCLE_TASK = "trading.tasks.trade_cycle_task"
CYCLE_QUEUE = "cycles"
NAME_PREFIX = "cycle: "


@dataclass
class ScheduleSync:
    """What a sync changed, by task name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.disabled)


def cycle_schedule_name(*, symbol_name: str) -> str:
    return f"{NAME_PREFIX}{symbol_name}"


def _interval(every: int, cache: dict[int, IntervalSchedule]) -> IntervalSchedule:
    # One shared schedule per interval (django-celery-beat's advice); the table has no unique
    # constraint, so take the oldest match rather than get_or_create's "exactly one".
    if every not in cache:
        found = (
            IntervalSchedule.objects.filter(every=every, period=IntervalSchedule.SECONDS)
            .order_by("id")
            .first()
        )
        cache[every] = found or IntervalSchedule.objects.create(
            every=every, period=IntervalSchedule.SECONDS
        )
    return cache[every]


@transaction.atomic
def cycle_schedules_sync() -> ScheduleSync:
    """Make one PeriodicTask per Strategy match it; disable cycle tasks with no strategy.

    Saves only rows that differ, then bumps ``PeriodicTasks`` once, so beat reloads once.
    """
    result = ScheduleSync()
    intervals: dict[int, IntervalSchedule] = {}
    existing = {t.name: t for t in PeriodicTask.objects.filter(task=CYCLE_TASK)}
    wanted: set[str] = set()
    for strategy in Strategy.objects.select_related("symbol").order_by("symbol__name"):
        name = cycle_schedule_name(symbol_name=strategy.symbol.name)
        wanted.add(name)
        desired = {
            "task": CYCLE_TASK,
            "interval": _interval(strategy.interval_seconds, intervals),
            "crontab": None,
            "solar": None,
            "clocked": None,
            "args": json.dumps([strategy.symbol_id]),
            "kwargs": "{}",
            "queue": CYCLE_QUEUE,
            # A cycle that waited a whole interval in the queue is stale: the next one is due.
            "expire_seconds": strategy.interval_seconds,
            "expires": None,
            "one_off": False,
            "enabled": strategy.symbol.enabled,
            "description": (
                f"Every {strategy.interval_seconds}s: one trade cycle of "
                f"{strategy.symbol.name} ({strategy.get_agent_display()}). Managed from the "
                "strategy and the symbol: edit those; edits here are overwritten on sync."
            ),
        }
        task = existing.get(name)
        if task is None:
            task = PeriodicTask(name=name, **desired)
            task.no_changes = True  # one PeriodicTasks bump at the end, not one per row
            task.save()
            result.created.append(name)
        elif _differs(task, desired):
            for attr, value in desired.items():
                setattr(task, attr, value)
            task.no_changes = True
            task.save()
            result.updated.append(name)
    for name, task in existing.items():
        if name not in wanted and task.enabled:
            task.enabled = False
            task.no_changes = True
            task.save()
            result.disabled.append(name)
    if result.changed:
        PeriodicTasks.update_changed()
        logger.info(
            "cycle schedules synced: created %s, updated %s, disabled %s",
            result.created,
            result.updated,
            result.disabled,
        )
    return result


def _differs(task: PeriodicTask, desired: dict[str, object]) -> bool:
    for attr, value in desired.items():
        current = getattr(task, attr)
        if attr == "interval":
            if task.interval_id != value.id:  # type: ignore[attr-defined]
                return True
        elif current != value:
            return True
    return False


def cycle_schedules_sync_on_commit() -> None:
    """Sync after the current transaction commits (now, outside one).

    A failing sync must not turn a saved strategy into an error page after the fact: it is
    logged, and ``manage.py sync_schedules`` repairs it.
    """

    def run() -> None:
        try:
            cycle_schedules_sync()
        except Exception:
            logger.exception("cycle schedules sync failed; run manage.py sync_schedules")

    transaction.on_commit(run)
