"""The admin action "Emergency close selected positions", for ``trading.admin.PositionAdmin``.

Wire it with the mixin (``class PositionAdmin(EmergencyCloseActionMixin, ReadOnlyAdmin)``): it
adds the action and the permission check that hides it from users who may not use it.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from dashboard.permissions import may_emergency_close
from dashboard.reauth import REAUTH_REFUSED, password_entered_recently, reauth_satisfied
from dashboard.views import report_messages
from trading.emergency import emergency_close_all, emergency_plan
from trading.models import Position

ACTION_NAME = "emergency_close_selected"


@admin.action(
    description="Emergency close selected positions",
    permissions=["emergency_close"],
)
def emergency_close_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Position]
) -> HttpResponse | None:
    """Show what closing the selected positions' symbols touches; on "yes", do it."""
    if not may_emergency_close(request.user):
        raise PermissionDenied("Emergency close needs a superuser or trading.emergency_close.")
    symbols = sorted(
        set(
            queryset.filter(status__in=Position.OPEN_STATUSES).values_list(
                "symbol__name", flat=True
            )
        )
    )
    if not symbols:
        modeladmin.message_user(
            request, "None of the selected positions is open: nothing to close.", "warning"
        )
        return None
    refused = ""
    if request.POST.get("confirm") == "yes" and not reauth_satisfied(request):
        refused = REAUTH_REFUSED
    elif request.POST.get("confirm") == "yes":
        reason = request.POST.get("reason", "").strip() or "emergency close from the admin"
        report = emergency_close_all(
            symbols=symbols, reason=reason, actor=request.user.get_username()
        )
        report_messages(request, report)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Emergency close selected positions",
        "plan": emergency_plan(symbols=symbols),
        "form_action": "",
        # Re-post the selection and the action so the confirmation lands back here.
        "hidden_fields": [
            *((helpers.ACTION_CHECKBOX_NAME, pk) for pk in queryset.values_list("pk", flat=True)),
            ("action", ACTION_NAME),
        ],
        "default_reason": "emergency close from the admin",
        "opts": modeladmin.model._meta,
        "reauth_needed": not password_entered_recently(request),
        "reauth_refused": refused,
    }
    return TemplateResponse(
        request, "dashboard/emergency_confirm.html", context, status=403 if refused else 200
    )


class EmergencyCloseActionMixin:
    """Adds the emergency-close action to a ``ModelAdmin`` of ``Position``."""

    actions = [emergency_close_selected]

    def has_emergency_close_permission(self, request: HttpRequest) -> bool:
        return may_emergency_close(request.user)
