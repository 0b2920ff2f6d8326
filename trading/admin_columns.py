"""Columns of the admin lists, with numbers as traders read them (``core.formatting``).

The model admins list these instead of the raw fields, which the admin shows with all ten
stored decimals (``1.1800000000``).
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from core.formatting import duration_text, money_text, price_text, quantity_text
from trading.models import Order, Position, Symbol


def _pnl_html(value: object) -> str:
    if value is None:
        return money_text(None)
    colour = "#2e7d32" if value > 0 else "#c62828" if value < 0 else "inherit"
    return format_html('<span style="color:{}">{}</span>', colour, money_text(value))


def _side_html(side: str) -> str:
    colour = {"LONG": "#2e7d32", "SHORT": "#c62828", "BUY": "#2e7d32", "SELL": "#c62828"}
    return format_html('<strong style="color:{}">{}</strong>', colour.get(side, "inherit"), side)


class PositionColumns:
    """Symbol (to the position's page), side in colour, quantity, entry, exit, PnL, reason, age;
    the record's page with the same formatting."""

    fields = (
        "symbol_link",
        "side_coloured",
        "status",
        "quantity_text",
        "entry_text",
        "leverage",
        "margin_type",
        "take_profit_text",
        "stop_text",
        "opened_reason",
        "opened_at",
        "closed_at",
        "close_reason",
        "exit_text",
        "pnl_text",
        "fees_text",
        "adopted",
        "skip_reason",
        "skip_reason_at",
    )
    readonly_fields = fields

    @admin.display(description="symbol", ordering="symbol__name")
    def symbol_link(self, obj: Position) -> str:
        url = reverse("dashboard_position", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.symbol.name)

    @admin.display(description="side", ordering="side")
    def side_coloured(self, obj: Position) -> str:
        return _side_html(obj.side)

    @admin.display(description="qty", ordering="quantity")
    def quantity_text(self, obj: Position) -> str:
        return quantity_text(obj.quantity, obj.symbol)

    @admin.display(description="entry", ordering="entry_price")
    def entry_text(self, obj: Position) -> str:
        return price_text(obj.entry_price, obj.symbol)

    @admin.display(description="SL", ordering="stop_loss_price")
    def stop_text(self, obj: Position) -> str:
        return price_text(obj.stop_loss_price, obj.symbol)

    @admin.display(description="TP", ordering="take_profit_price")
    def take_profit_text(self, obj: Position) -> str:
        return price_text(obj.take_profit_price, obj.symbol)

    @admin.display(description="exit", ordering="exit_price")
    def exit_text(self, obj: Position) -> str:
        return price_text(obj.exit_price, obj.symbol)

    @admin.display(description="PnL", ordering="realized_pnl")
    def pnl_text(self, obj: Position) -> str:
        return _pnl_html(obj.realized_pnl)

    @admin.display(description="fees", ordering="fees")
    def fees_text(self, obj: Position) -> str:
        return money_text(obj.fees)

    @admin.display(description="reason", ordering="close_reason")
    def reason_text(self, obj: Position) -> str:
        return obj.close_reason or obj.skip_reason[:40] or "—"

    @admin.display(description="age", ordering="-opened_at")
    def age_text(self, obj: Position) -> str:
        """Held so far (open) or how long it was held (closed)."""
        end = obj.closed_at or timezone.now()
        return duration_text((end - obj.opened_at).total_seconds()) if obj.opened_at else "—"


class OrderColumns:
    fields = (
        "symbol",
        "position",
        "purpose",
        "side_coloured",
        "order_type",
        "quantity_text",
        "stop_text",
        "reduce_only",
        "close_position",
        "is_conditional",
        "client_order_id",
        "exchange_order_id",
        "status",
        "filled_text",
        "average_text",
        "error_code",
        "error_message",
        "created_at",
        "sent_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="side", ordering="side")
    def side_coloured(self, obj: Order) -> str:
        return _side_html(obj.side)

    @admin.display(description="qty", ordering="quantity")
    def quantity_text(self, obj: Order) -> str:
        return quantity_text(obj.quantity, obj.symbol)

    @admin.display(description="stop", ordering="stop_price")
    def stop_text(self, obj: Order) -> str:
        return price_text(obj.stop_price, obj.symbol)

    @admin.display(description="filled", ordering="filled_quantity")
    def filled_text(self, obj: Order) -> str:
        return quantity_text(obj.filled_quantity, obj.symbol)

    @admin.display(description="avg. price", ordering="average_price")
    def average_text(self, obj: Order) -> str:
        return price_text(obj.average_price, obj.symbol)


class PlainDecimalField(forms.DecimalField):
    """A decimal input showing the value as written (0.1, 2000000), not with every stored place
    (0.1000000000); what is typed is validated and stored exactly as before."""

    def prepare_value(self, value: object) -> object:
        if isinstance(value, Decimal) and value.is_finite():
            return format(value.normalize(), "f")
        return value


class SymbolColumns:
    formfield_overrides = {models.DecimalField: {"form_class": PlainDecimalField}}

    @admin.display(description="tick size", ordering="tick_size")
    def tick_text(self, obj: Symbol) -> str:
        return price_text(obj.tick_size)

    @admin.display(description="step size", ordering="step_size")
    def step_text(self, obj: Symbol) -> str:
        return quantity_text(obj.step_size)

    @admin.display(description="min qty", ordering="min_qty")
    def min_qty_text(self, obj: Symbol) -> str:
        return quantity_text(obj.min_qty, obj)

    @admin.display(description="min notional", ordering="min_notional")
    def min_notional_text(self, obj: Symbol) -> str:
        return money_text(obj.min_notional)
