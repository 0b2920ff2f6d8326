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

from risk.services import rule_event_record, rule_save
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


# --- Schedules as the admin sees them ---------------------------------------------------------

# Beat entries the bot depends on: switching one off silently disables a safety net.
SYSTEM_TASKS = {
    "trading.tasks.guard_pass_task": "the guard",
    "monitoring.tasks.sentinel_pass_task": "the sentinel",
    "dashboard.tasks.equity_snapshot_task": "the equity snapshot",
}


class ScheduleManaged(ValueError):
    """A system or strategy schedule was to be changed from the admin; nothing changed."""


def schedule_managed_reason(*, task: PeriodicTask) -> str | None:
    """Why ``task`` may not be changed by hand, or None when it may."""
    if task.task in SYSTEM_TASKS:
        return f"{task.name} is a system schedule ({SYSTEM_TASKS[task.task]}): not changed here"
    if task.task == CYCLE_TASK:
        return f"{task.name} follows its strategy and symbol: edit those instead"
    return None


def _refuse_managed(tasks: list[PeriodicTask], *, allow_cycles: bool = False) -> None:
    reasons = [
        reason
        for task in tasks
        if (reason := schedule_managed_reason(task=task))
        and not (allow_cycles and task.task == CYCLE_TASK)
    ]
    if reasons:
        raise ScheduleManaged("; ".join(reasons) + ". Nothing was changed.")


@transaction.atomic
def schedules_set_enabled(*, task_ids: list[int], enabled: bool | None, actor: str) -> int:
    """Enable, disable (or with ``enabled`` None toggle) schedules; each change is recorded.

    Raises ``ScheduleManaged`` and changes nothing when a system or strategy schedule is among
    them. Returns how many schedules changed.
    """
    tasks = list(PeriodicTask.objects.select_for_update().filter(id__in=task_ids).order_by("id"))
    _refuse_managed(tasks)
    changed = 0
    for task in tasks:
        wanted = (not task.enabled) if enabled is None else enabled
        if task.enabled == wanted:
            continue
        task.enabled = wanted
        if not wanted:
            task.last_run_at = None  # as django-celery-beat's own action: no catch-up run later
        rule_save(instance=task, actor=actor)
        changed += 1
    if changed:
        PeriodicTasks.update_changed()
    return changed


@transaction.atomic
def schedules_run(*, task_ids: list[int], actor: str) -> list[str]:
    """Queue one run of each schedule now, recorded with its actor; system schedules refused.

    A strategy's cycle may be run (it is what ``run_cycle`` does); the guard and the sentinel run
    on their own. Returns the names queued.
    """
    from celery import current_app

    tasks = list(PeriodicTask.objects.filter(id__in=task_ids).order_by("id"))
    _refuse_managed(tasks, allow_cycles=True)
    current_app.loader.import_default_modules()
    missing = [t.task for t in tasks if t.task not in current_app.tasks]
    if missing:
        raise ScheduleManaged(f"task {', '.join(missing)} not found. Nothing was run.")
    queued = []
    for task in tasks:
        rule_event_record(
            instance=task, field="run", old_value="", new_value="queued now", actor=actor
        )
        args, kwargs = json.loads(task.args or "[]"), json.loads(task.kwargs or "{}")
        options = {"queue": task.queue} if task.queue else {}
        name = task.name
        transaction.on_commit(
            lambda t=current_app.tasks[task.task], a=args, k=kwargs, o=options, n=name: (
                t.apply_async(args=a, kwargs=k, headers={"periodic_task_name": n}, **o)
            )
        )
        queued.append(task.name)
    return queued
