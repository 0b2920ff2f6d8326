"""Template filters of the dashboard."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def plain(value: object) -> str:
    """A decimal as a trader writes it: 100000 and 0.001, never 1E+5 or 0.0010000000."""
    if value is None or value == "":
        return "—"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)
