from __future__ import annotations

from django.contrib import admin, messages

from core.models import Heartbeat, Lease, MonitoringSettings
from monitoring.models import Alert, AlertThrottle
from monitoring.services import alerts_acknowledge, protection_clear
from risk.admin import RuleHistoryAdmin
from trading.models import ProtectionState, StreamState


@admin.register(MonitoringSettings)
class MonitoringSettingsAdmin(RuleHistoryAdmin):
    list_display = (
        "__str__",
        "reattach_debounce_seconds",
        "unknown_position_policy",
        "alert_repeat_seconds",
        "pnl_drift_usd",
        "heartbeat_stale_seconds",
    )
    fieldsets = (
        ("Guard", {"fields": ("reattach_debounce_seconds", "unknown_position_policy")}),
        ("Guard passes", {"fields": ("guard_lease_seconds", "heartbeat_keep_minutes")}),
        ("Sentinel", {"fields": ("pnl_drift_usd", "heartbeat_stale_seconds")}),
        ("Alerts", {"fields": ("alert_repeat_seconds",)}),
        ("History", {"fields": ("change_history",)}),
    )

    def has_add_permission(self, request) -> bool:
        return not MonitoringSettings.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the guard and the sentinel: visible, never edited by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # What the guard and sentinel saw is evidence; pruning is the bot's job, not a click.
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "severity",
        "key",
        "symbol",
        "message",
        "delivery",
        "acknowledged_at",
        "acknowledged_by",
    )
    list_filter = ("severity", "delivery", ("acknowledged_at", admin.EmptyFieldListFilter))
    search_fields = ("key", "message")
    actions = ("acknowledge",)

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.has_perm("monitoring.change_alert")

    @admin.action(description="Acknowledge the selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request, queryset) -> None:
        count = alerts_acknowledge(
            alert_ids=list(queryset.values_list("id", flat=True)),
            actor=request.user.get_username(),
        )
        self.message_user(request, f"{count} alert(s) acknowledged.", messages.SUCCESS)


@admin.register(ProtectionState)
class ProtectionStateAdmin(ReadOnlyAdmin):
    list_display = (
        "symbol",
        "kind",
        "position",
        "gap_since",
        "gave_up_at",
        "reason",
        "error_code",
        "attempts",
        "last_attempt_at",
        "next_attempt_at",
    )
    list_filter = ("kind", ("gave_up_at", admin.EmptyFieldListFilter))
    actions = ("clear",)

    def has_clear_permission(self, request) -> bool:
        return request.user.has_perm("trading.change_protectionstate")

    @admin.action(description="Clear: let the guard try again now", permissions=["clear"])
    def clear(self, request, queryset) -> None:
        count = protection_clear(
            state_ids=list(queryset.values_list("id", flat=True)),
            actor=request.user.get_username(),
        )
        self.message_user(request, f"{count} guard state(s) cleared.", messages.SUCCESS)


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = (
        "process",
        "finished_at",
        "duration_ms",
        "requests",
        "weight",
        "positions",
        "actions",
        "ok",
        "error",
    )
    list_filter = ("process", "ok")


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ("name", "owner", "expires_at", "skipped_passes", "last_error")


@admin.register(AlertThrottle)
class AlertThrottleAdmin(ReadOnlyAdmin):
    list_display = ("key", "last_raised_at")
    search_fields = ("key",)


@admin.register(StreamState)
class StreamStateAdmin(ReadOnlyAdmin):
    """Written by the stream process every few seconds; a hand edit would only be overwritten."""

    list_display = (
        "name",
        "connected",
        "since",
        "updated_at",
        "last_event_at",
        "lag_ms",
        "events",
        "reconciles",
        "last_reconcile_at",
        "error",
    )
