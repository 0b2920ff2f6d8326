from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.html import format_html_join

from risk.models import RiskProfile, RuleChange
from risk.selectors import rule_history
from risk.services import rule_delete, rule_save


class RuleHistoryAdmin(admin.ModelAdmin):
    """Saves through ``rule_save`` so every change is recorded, and shows the history."""

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "change_history")

    @admin.display(description="Change history (newest first)")
    def change_history(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "—"
        rows = rule_history(instance=obj)
        if not rows:
            return "No changes recorded yet."
        return format_html_join(
            "\n",
            "<div>{} · {} · <b>{}</b>: {} → {}</div>",
            (
                (
                    c.changed_at.strftime("%Y-%m-%d %H:%M:%S"),
                    c.changed_by,
                    c.field,
                    c.old_value or "∅",
                    c.new_value or "∅",
                )
                for c in rows
            ),
        )

    def save_model(self, request, obj, form, change) -> None:
        try:
            rule_save(instance=obj, actor=request.user.get_username())
        except ValidationError as exc:  # pragma: no cover - the form validated the same rules
            self.message_user(request, f"Not saved: {exc}", level="error")

    def delete_model(self, request, obj) -> None:
        rule_delete(instance=obj, actor=request.user.get_username())

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            rule_delete(instance=obj, actor=request.user.get_username())


@admin.register(RiskProfile)
class RiskProfileAdmin(RuleHistoryAdmin):
    list_display = (
        "name",
        "is_active",
        "leverage",
        "margin_type",
        "risk_pct",
        "max_risk_usd",
        "take_profit_pct",
        "stop_loss_pct",
        "max_open_positions",
    )
    list_filter = ("is_active",)
    fieldsets = (
        (None, {"fields": ("name", "is_active")}),
        ("Exchange settings", {"fields": ("leverage", "margin_type")}),
        ("Sizing", {"fields": ("risk_pct", "max_risk_usd", "max_open_positions")}),
        ("Exits", {"fields": ("take_profit_pct", "stop_loss_pct", "min_holding_seconds")}),
        ("Limits", {"fields": ("partial_close_tolerance_pct", "daily_loss_limit_usd")}),
        ("History", {"fields": ("change_history",)}),
    )


@admin.register(RuleChange)
class RuleChangeAdmin(admin.ModelAdmin):
    list_display = (
        "changed_at",
        "changed_by",
        "model",
        "object_repr",
        "field",
        "old_value",
        "new_value",
    )
    list_filter = ("model", "changed_by")
    search_fields = ("object_repr", "field", "old_value", "new_value")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
