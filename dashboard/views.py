"""The dashboard page and the "Close everything" button, inside the admin."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from dashboard import selectors
from dashboard.permissions import may_emergency_close
from trading.emergency import emergency_close_all, emergency_plan
from trading.selectors import daily_pnl

CHART_RANGES = {"1h": 1, "6h": 6, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}
DEFAULT_RANGE = "24h"


@staff_member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Equity, open positions, recent closes, heartbeats, alerts and the kill switch."""
    chosen = request.GET.get("range", DEFAULT_RANGE)
    if chosen not in CHART_RANGES:
        chosen = DEFAULT_RANGE
    snapshots = selectors.equity_snapshots(since=selectors.chart_since(hours=CHART_RANGES[chosen]))
    alerts = selectors.alerts_open()
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "chart": selectors.equity_chart(snapshots=snapshots),
        "ranges": list(CHART_RANGES),
        "chosen_range": chosen,
        "open_positions": selectors.open_positions_with_marks(),
        "closes": selectors.recent_closes(),
        "pnl_today": daily_pnl(),
        "heartbeats": selectors.heartbeats_latest(),
        "alerts": alerts[0] if alerts is not None else None,
        "alerts_count": alerts[1] if alerts is not None else 0,
        "switch": selectors.trading_switch_current(),
        "may_emergency_close": may_emergency_close(request.user),
    }
    return TemplateResponse(request, "dashboard/dashboard.html", context)


@staff_member_required
@require_http_methods(["GET", "POST"])
def close_everything(request: HttpRequest) -> HttpResponse:
    """GET: what an emergency close would touch. POST (confirmed): do it, report each symbol."""
    if not may_emergency_close(request.user):
        raise PermissionDenied("Emergency close needs a superuser or trading.emergency_close.")
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        reason = request.POST.get("reason", "").strip() or "emergency close from the dashboard"
        report = emergency_close_all(symbols=None, reason=reason, actor=request.user.get_username())
        report_messages(request, report)
        return redirect("dashboard")
    context = {
        **admin.site.each_context(request),
        "title": "Close everything",
        "plan": emergency_plan(),
        "form_action": "",
        "hidden_fields": [],
        "default_reason": "emergency close from the dashboard",
    }
    return TemplateResponse(request, "dashboard/emergency_confirm.html", context)


def report_messages(request: HttpRequest, report) -> None:
    """One admin message for the halt and one per symbol, red for anything left open."""
    messages.warning(
        request,
        "Trading halted." if report.halted else "Trading was already halted; it stays halted.",
    )
    if not report.results:
        messages.info(request, "Nothing was open on the exchange.")
    for result in report.results:
        level = messages.ERROR if result in report.left_open else messages.SUCCESS
        messages.add_message(request, level, str(result))
    if report.ok:
        messages.success(
            request, f"Flat: nothing is open. {report.orders_cancelled} order(s) cancelled."
        )
