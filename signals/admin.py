from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from signals.models import LlmCall, ManualSignal, SignalDecision
from signals.services import check_manual_signal_accepted, manual_signal_create


class AuditAdmin(admin.ModelAdmin):
    """Records written by the bot: visible, never added, edited or deleted by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SignalDecision)
class SignalDecisionAdmin(AuditAdmin):
    list_display = ("created_at", "symbol", "agent", "action", "confidence", "reason")
    list_filter = ("action", "agent", "symbol")
    search_fields = ("reason",)
    date_hierarchy = "created_at"
    list_select_related = ("symbol",)


@admin.register(LlmCall)
class LlmCallAdmin(AuditAdmin):
    list_display = (
        "created_at",
        "model",
        "symbols",
        "outcome",
        "http_status",
        "latency_ms",
        "total_tokens",
        "refusal_reason",
    )
    list_filter = ("outcome", "model")
    search_fields = ("symbols", "refusal_reason", "response")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "model",
        "symbols",
        "outcome",
        "refusal_reason",
        "results",
        "http_status",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt",
        "response",
    )
    readonly_fields = fields

    @admin.display(description="Prompt (request body)")
    def prompt(self, obj: LlmCall) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre>', json.dumps(obj.request, indent=2)
        )


class ManualSignalForm(forms.ModelForm):
    class Meta:
        model = ManualSignal
        fields = ("symbol", "action", "note")

    def clean(self) -> dict:
        cleaned = super().clean()
        symbol = cleaned.get("symbol")
        if symbol is not None:
            refusal = check_manual_signal_accepted(symbol=symbol)
            if refusal:
                self.add_error("symbol", refusal)
        return cleaned


@admin.register(ManualSignal)
class ManualSignalAdmin(admin.ModelAdmin):
    """Enter a signal for a symbol whose strategy is manual; its next cycle uses it once."""

    form = ManualSignalForm

    list_display = ("created_at", "symbol", "action", "note", "created_by", "consumed_at")
    list_filter = ("action", "symbol")
    fields = ("symbol", "action", "note", "created_by", "created_at", "consumed_at", "superseded")
    readonly_fields = ("created_by", "created_at", "consumed_at", "superseded")

    def has_change_permission(self, request, obj=None) -> bool:
        # A signal is a one-shot instruction: to change one, delete it (while pending) and
        # enter a new one, so what a cycle used is exactly what was entered.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.consumed_at is not None:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        created = manual_signal_create(
            symbol=obj.symbol,
            action=obj.action,
            note=obj.note,
            created_by=request.user.get_username(),
        )
        obj.pk = created.pk
        obj.created_by, obj.created_at = created.created_by, created.created_at


from signals import schedules_admin  # noqa: E402, F401  (the schedules' admin, with permissions)
