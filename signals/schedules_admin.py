"""django-celery-beat's schedules in the admin, with the bot's rules on who may change what.

The library's own admin lets anyone who can see the list enable, disable, toggle and run any
schedule (its actions declare no permission), records nothing, and lets the guard and the
sentinel be switched off. Here: the guard, sentinel and equity schedules cannot be edited, run,
toggled or deleted; a strategy's cycle is edited through the strategy; every other action needs
the change permission and goes through a service that records who did it.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django_celery_beat.admin import IntervalScheduleAdmin, PeriodicTaskAdmin, PeriodicTaskForm
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from risk.checks import check_schedule_interval
from risk.services import rule_delete, rule_save
from signals.schedules import (
    CYCLE_TASK,
    SYSTEM_TASKS,
    ScheduleManaged,
    schedule_managed_reason,
    schedules_run,
    schedules_set_enabled,
)


class BoundedPeriodicTaskForm(PeriodicTaskForm):
    def clean(self) -> dict:
        cleaned = super().clean()
        task = cleaned.get("task") or cleaned.get("regtask")
        if task in SYSTEM_TASKS or task == CYCLE_TASK:
            # A second guard or cycle entry made by hand would run beside the managed one.
            self.add_error(
                "task",
                "This task is scheduled by the system (guard, sentinel, equity) or by the "
                "strategies; it cannot be scheduled here.",
            )
        refusal = check_schedule_interval(every=cleaned.get("expire_seconds"), period="seconds")
        if refusal:
            self.add_error("expire_seconds", refusal)
        return cleaned


def _actor(request) -> str:
    return request.user.get_username()


class ArenaPeriodicTaskAdmin(PeriodicTaskAdmin):
    form = BoundedPeriodicTaskForm
    actions = ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")
    list_display = ("name", "enabled", "managed", "scheduler", "interval", "last_run_at")

    @admin.display(description="Managed by")
    def managed(self, obj: PeriodicTask) -> str:
        reason = schedule_managed_reason(task=obj)
        if reason is None:
            return "—"
        return "the system" if "system" in reason else "its strategy"

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and schedule_managed_reason(task=obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and schedule_managed_reason(task=obj):
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        rule_save(instance=obj, actor=_actor(request))

    def delete_model(self, request, obj) -> None:
        rule_delete(instance=obj, actor=_actor(request))

    def delete_queryset(self, request, queryset) -> None:
        managed = [r for t in queryset if (r := schedule_managed_reason(task=t))]
        if managed:
            self.message_user(request, "; ".join(managed) + ". Nothing deleted.", messages.ERROR)
            return
        for task in queryset:
            rule_delete(instance=task, actor=_actor(request))

    def _set_enabled(self, request, queryset, enabled: bool | None, verb: str) -> None:
        try:
            count = schedules_set_enabled(
                task_ids=list(queryset.values_list("id", flat=True)),
                enabled=enabled,
                actor=_actor(request),
            )
        except ScheduleManaged as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{count} schedule(s) {verb}.", messages.SUCCESS)

    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request, queryset) -> None:
        self._set_enabled(request, queryset, True, "enabled")

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request, queryset) -> None:
        self._set_enabled(request, queryset, False, "disabled")

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request, queryset) -> None:
        self._set_enabled(request, queryset, None, "toggled")

    @admin.action(description="Run selected tasks", permissions=["change"])
    def run_tasks(self, request, queryset) -> None:
        try:
            names = schedules_run(
                task_ids=list(queryset.values_list("id", flat=True)), actor=_actor(request)
            )
        except ScheduleManaged as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Queued now: {', '.join(names)}.", messages.SUCCESS)


class BoundedIntervalForm(forms.ModelForm):
    class Meta:
        model = IntervalSchedule
        fields = ("every", "period")

    def clean(self) -> dict:
        cleaned = super().clean()
        refusal = check_schedule_interval(every=cleaned.get("every"), period=cleaned.get("period"))
        if refusal:
            self.add_error("every", refusal)
        return cleaned


class ArenaIntervalScheduleAdmin(IntervalScheduleAdmin):
    form = BoundedIntervalForm

    def _used_by_managed(self, obj: IntervalSchedule | None) -> bool:
        return obj is not None and any(
            schedule_managed_reason(task=t) for t in obj.periodictask_set.all()
        )

    def has_change_permission(self, request, obj=None) -> bool:
        if self._used_by_managed(obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if self._used_by_managed(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj) -> None:
        rule_delete(instance=obj, actor=_actor(request))

    def delete_queryset(self, request, queryset) -> None:
        # Deleting an interval deletes the schedules on it (a cascade in the library).
        if any(self._used_by_managed(interval) for interval in queryset):
            self.message_user(
                request,
                "A system or strategy schedule runs on one of these intervals. Nothing deleted.",
                messages.ERROR,
            )
            return
        for interval in queryset:
            rule_delete(instance=interval, actor=_actor(request))


for model, model_admin in (
    (PeriodicTask, ArenaPeriodicTaskAdmin),
    (IntervalSchedule, ArenaIntervalScheduleAdmin),
):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
