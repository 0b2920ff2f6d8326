"""The dashboard page and the "Close everything" button, inside the admin."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from dashboard import selectors
from dashboard.leaderboard import agent_leaderboard
from dashboard.permissions import may_emergency_close
from dashboard.position_chart import position_chart
from dashboard.reauth import REAUTH_REFUSED, password_entered_recently, reauth_satisfied
from trading.emergency import emergency_close_all, emergency_plan
from trading.models import Position
from trading.selectors import daily_pnl

CHART_RANGES = {"1h": 1, "6h": 6, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}
DEFAULT_RANGE = "24h"
LEADERBOARD_PERIODS: dict[str, int | None] = {
    "day": 24,
    "week": 24 * 7,
    "month": 24 * 30,
    "all": None,
}
DEFAULT_PERIOD = "week"
# The guard reads the exchange every 5 s; the page looks as often, from the database.
REFRESH_SECONDS = 5
VIEW_PERMISSION = "trading.view_position"


def viewer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff with the view permission on positions: the dashboard shows positions, PnL and
    alerts, so a staff account without it gets 403, not the trading book."""

    @staff_member_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.has_perm(VIEW_PERMISSION):
            raise PermissionDenied(f"The dashboard needs {VIEW_PERMISSION}.")
        return view(request, *args, **kwargs)

    return wrapper


@viewer_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Equity, open positions, recent closes, heartbeats, alerts, the kill switch, agents."""
    chosen = request.GET.get("range", DEFAULT_RANGE)
    if chosen not in CHART_RANGES:
        chosen = DEFAULT_RANGE
    snapshots = selectors.equity_snapshots(since=selectors.chart_since(hours=CHART_RANGES[chosen]))
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "chart": selectors.equity_chart(snapshots=snapshots),
        "ranges": list(CHART_RANGES),
        "chosen_range": chosen,
        "refresh_seconds": REFRESH_SECONDS,
        **_live_context(request),
    }
    return TemplateResponse(request, "dashboard/dashboard.html", context)


@viewer_required
def dashboard_live(request: HttpRequest) -> HttpResponse:
    """The parts of the dashboard that change, as an HTML fragment the page swaps in every few
    seconds. Database reads only: polling it costs the exchange nothing."""
    response = TemplateResponse(request, "dashboard/_live.html", _live_context(request))
    response["Cache-Control"] = "no-store"
    return response


def _live_context(request: HttpRequest) -> dict[str, object]:
    alerts = selectors.alerts_open()
    period = request.GET.get("period", DEFAULT_PERIOD)
    if period not in LEADERBOARD_PERIODS:
        period = DEFAULT_PERIOD
    return {
        "open_positions": selectors.open_positions_with_marks(),
        "closes": selectors.recent_closes(),
        "pnl_today": daily_pnl(),
        "heartbeats": selectors.heartbeats_latest(),
        "stream": selectors.stream_state_latest(),
        "alerts": alerts[0] if alerts is not None else None,
        "alerts_count": alerts[1] if alerts is not None else 0,
        "switch": selectors.trading_switch_current(),
        "may_emergency_close": may_emergency_close(request.user),
        "periods": list(LEADERBOARD_PERIODS),
        "chosen_period": period,
        "leaderboard": agent_leaderboard(since=_period_start(period)),
    }


def _period_start(period: str) -> datetime | None:
    hours = LEADERBOARD_PERIODS[period]
    return None if hours is None else timezone.now() - timedelta(hours=hours)


@viewer_required
def position_detail(request: HttpRequest, position_id: int) -> HttpResponse:
    """One position's story: the price around it with entry, exits and close marked; its
    orders; its events."""
    position = get_object_or_404(Position.objects.select_related("symbol"), pk=position_id)
    context = {
        **admin.site.each_context(request),
        "title": f"{position.side} {position.symbol.name} #{position.pk}",
        "position": position,
        "chart": position_chart(position=position),
        "orders": position.orders.order_by("created_at", "id"),
        "events": position.events.order_by("created_at", "id"),
    }
    return TemplateResponse(request, "dashboard/position.html", context)


@staff_member_required
@require_http_methods(["GET", "POST"])
def close_everything(request: HttpRequest) -> HttpResponse:
    """GET: what an emergency close would touch. POST (confirmed): do it, report each symbol."""
    if not may_emergency_close(request.user):
        raise PermissionDenied("Emergency close needs a superuser or trading.emergency_close.")
    refused = ""
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        if reauth_satisfied(request):
            reason = request.POST.get("reason", "").strip() or "emergency close from the dashboard"
            report = emergency_close_all(
                symbols=None, reason=reason, actor=request.user.get_username()
            )
            report_messages(request, report)
            return redirect("dashboard")
        refused = REAUTH_REFUSED
    context = {
        **admin.site.each_context(request),
        "title": "Close everything",
        "plan": emergency_plan(),
        "form_action": "",
        "hidden_fields": [],
        "default_reason": "emergency close from the dashboard",
        "reauth_needed": not password_entered_recently(request),
        "reauth_refused": refused,
    }
    return TemplateResponse(
        request, "dashboard/emergency_confirm.html", context, status=403 if refused else 200
    )


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
