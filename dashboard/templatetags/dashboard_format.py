"""Template filters of the dashboard: the numbers through ``core.formatting``, nowhere else."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django import template
from django.utils import timezone

from core import formatting

register = template.Library()


@register.filter
def plain(value: object) -> str:
    """A decimal as a trader writes it: 100000 and 0.001, never 1E+5 or 0.0010000000."""
    if value is None or value == "":
        return formatting.NONE_TEXT
    if isinstance(value, Decimal):
        return formatting.price_text(value)
    return str(value)


@register.filter
def price(value: Decimal | None, symbol: object = None) -> str:
    """``{{ p.entry_price|price:p.symbol }}``: on the symbol's tick."""
    return formatting.price_text(value, symbol or None)


@register.filter
def qty(value: Decimal | None, symbol: object = None) -> str:
    """``{{ p.quantity|qty:p.symbol }}``: on the symbol's step."""
    return formatting.quantity_text(value, symbol or None)


@register.filter
def money(value: Decimal | None) -> str:
    """USDT to the cent, thousands grouped."""
    return formatting.money_text(value, grouped=True)


@register.filter
def pnl_class(value: Decimal | None) -> str:
    """CSS class of a PnL cell: gain, loss or nothing."""
    if value is None:
        return ""
    return "gain" if value > 0 else "loss" if value < 0 else ""


@register.filter
def age(value: datetime | None) -> str:
    """Time since ``value``: 42 s, 7 min, 3 h 05."""
    if value is None:
        return formatting.NONE_TEXT
    return formatting.duration_text((timezone.now() - value).total_seconds())


@register.filter
def seconds(value: float | int | None) -> str:
    """A number of seconds as a duration."""
    return formatting.duration_text(value)


@register.filter
def percent(value: Decimal | None) -> str:
    """A share as percent: 0.5 -> 50.0 %."""
    return formatting.percent_text(value)


@register.filter
def add_float(x: float, width: float) -> str:
    """The left edge of a candle body centred on ``x``."""
    return f"{float(x) - float(width) / 2:.1f}"


@register.filter
def body_height(bar: object) -> str:
    """A candle body's height, at least one unit so a flat candle still shows."""
    return f"{max(abs(bar.close_y - bar.open_y), 1.0):.1f}"
