from __future__ import annotations

from django import forms
from django.contrib import admin

from risk.admin import RuleHistoryAdmin
from trading.admin_columns import OrderColumns, PositionColumns, SymbolColumns
from trading.models import (
    ExchangeRequest,
    Fill,
    Income,
    Order,
    Position,
    StatusChange,
    Strategy,
    Symbol,
    TradeEvent,
    TradingSwitch,
)
from trading.switch import trading_switch_set


@admin.register(Symbol)
class SymbolAdmin(SymbolColumns, RuleHistoryAdmin):
    list_display = (
        "name",
        "enabled",
        "tick_text",
        "step_text",
        "min_qty_text",
        "min_notional_text",
        "max_leverage",
        "risk_profile",
        "filters_synced_at",
    )
    list_filter = ("enabled",)
    search_fields = ("name",)
    fieldsets = (
        (None, {"fields": ("name", "base_asset", "quote_asset", "enabled", "risk_profile")}),
        ("Price", {"fields": ("tick_size", "price_precision")}),
        (
            "Quantity (limit and stop orders)",
            {"fields": ("step_size", "min_qty", "max_qty", "quantity_precision")},
        ),
        (
            "Quantity (market orders)",
            {"fields": ("market_step_size", "market_min_qty", "market_max_qty")},
        ),
        ("Size and leverage", {"fields": ("min_notional", "max_leverage", "filters_synced_at")}),
        ("History", {"fields": ("change_history",)}),
    )


class TradingSwitchForm(forms.ModelForm):
    class Meta:
        model = TradingSwitch
        fields = ("enabled", "reason")

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("enabled") is False and not (cleaned.get("reason") or "").strip():
            self.add_error("reason", "Say why trading is halted (a reason is required).")
        return cleaned


@admin.register(TradingSwitch)
class TradingSwitchAdmin(RuleHistoryAdmin):
    """The kill switch, through ``trading_switch_set`` as ``manage.py trading --pause``: a reason
    is required to halt, the halt alert goes out, and the change is in the history."""

    form = TradingSwitchForm
    list_display = ("__str__", "enabled", "reason", "changed_by", "changed_at")
    fields = ("enabled", "reason", "changed_by", "changed_at", "change_history")
    readonly_fields = ("changed_by", "changed_at")

    def has_add_permission(self, request) -> bool:
        return not TradingSwitch.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        switch = trading_switch_set(
            enabled=obj.enabled, reason=obj.reason, actor=request.user.get_username()
        )
        obj.pk = switch.pk


@admin.register(Strategy)
class StrategyAdmin(RuleHistoryAdmin):
    list_display = ("symbol", "agent", "interval_seconds", "candle_interval", "llm_model")
    list_filter = ("agent",)
    fields = (
        "symbol",
        "agent",
        "interval_seconds",
        "candle_interval",
        "parameters",
        "llm_model",
        "llm_timeout_seconds",
        "change_history",
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the bot: visible, never edited by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class FillInline(admin.TabularInline):
    """A position's fills, as the exchange reported them: read only."""

    model = Fill
    extra = 0
    can_delete = False
    ordering = ("time", "trade_id")
    fields = (
        "time",
        "trade_id",
        "order",
        "side",
        "quantity",
        "price",
        "realized_pnl",
        "commission",
        "commission_asset",
        "commission_usdt",
        "maker",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class IncomeInline(admin.TabularInline):
    """Funding and liquidation clearance booked on the position: read only."""

    model = Income
    extra = 0
    can_delete = False
    fields = ("time", "income_type", "amount", "asset", "tran_id")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Position)
class PositionAdmin(PositionColumns, ReadOnlyAdmin):
    inlines = (FillInline, IncomeInline)
    list_display = (
        "symbol_link",
        "side_coloured",
        "status",
        "quantity_text",
        "entry_text",
        "stop_text",
        "take_profit_text",
        "exit_text",
        "pnl_text",
        "fees_text",
        "reason_text",
        "age_text",
        "awaiting_fills",
    )
    list_filter = (
        "status",
        "side",
        "close_reason",
        "symbol",
        "awaiting_fills",
        "opened_at",
        "closed_at",
    )
    list_display_links = ("status",)  # the symbol links to the position's page
    list_select_related = ("symbol",)
    date_hierarchy = "opened_at"
    search_fields = ("symbol__name", "opened_reason", "skip_reason", "close_reason")


@admin.register(Order)
class OrderAdmin(OrderColumns, ReadOnlyAdmin):
    list_display = (
        "created_at",
        "symbol",
        "purpose",
        "side_coloured",
        "order_type",
        "quantity_text",
        "stop_text",
        "status",
        "filled_text",
        "average_text",
        "client_order_id",
        "exchange_order_id",
        "error_code",
        "error_message",
    )
    list_filter = ("status", "purpose", "symbol")
    search_fields = ("client_order_id", "exchange_order_id")


@admin.register(ExchangeRequest)
class ExchangeRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "action",
        "symbol",
        "client_order_id",
        "ok",
        "error_code",
        "error_message",
        "latency_ms",
    )
    list_filter = ("ok", "action", "error_code")
    search_fields = ("client_order_id", "symbol")


@admin.register(StatusChange)
class StatusChangeAdmin(ReadOnlyAdmin):
    """Every status move of a position or an order, as ``trading.transitions`` recorded it."""

    list_display = (
        "created_at",
        "position",
        "order",
        "from_status",
        "to_status",
        "reason",
        "actor",
    )
    list_filter = ("to_status", "actor")
    list_select_related = ("position__symbol", "order__symbol")
    search_fields = ("reason", "order__client_order_id")
    date_hierarchy = "created_at"


@admin.register(TradeEvent)
class TradeEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "symbol", "kind", "position", "message", "actor")
    list_filter = ("kind", "symbol", "actor")
    search_fields = ("message",)
    date_hierarchy = "created_at"
