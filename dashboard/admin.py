"""The admin's red button: the position list gains the emergency close here, in the layer that
owns it, so the trading app's admin imports nothing above it."""

from __future__ import annotations

from django.contrib import admin

from dashboard.admin_actions import EmergencyCloseActionMixin
from trading.admin import PositionAdmin as TradingPositionAdmin
from trading.models import Position

admin.site.unregister(Position)


@admin.register(Position)
class PositionAdmin(EmergencyCloseActionMixin, TradingPositionAdmin):
    pass
