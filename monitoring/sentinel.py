"""The sentinel: every 5 min, a second pair of eyes on what the guard and the order path keep.

It covers every position the exchange holds and every open record here, whatever their status:
a stop-loss and a take-profit of the side that closes the exchange's position, a record whose
status the exchange contradicts, this system's unrealized PnL against the exchange's, the
guard's heartbeat, the exchange's reachability, and the kill switch against the positions and
the daily loss limit. It changes nothing on the exchange: it raises alerts (stored, shown in the
admin, sent to Telegram; a repeat within the window is suppressed).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from core.errors import ArenaError, RateLimited
from core.models import Heartbeat, MonitoringSettings
from core.selectors import monitoring_settings
from core.services import heartbeat_record, lease_claim, lease_release
from exchange.gateway import ExchangeGateway, ExchangeOrder, ExchangePosition
from monitoring.services import alert_raise, alerts_requeue_lost
from risk.checks import check_daily_loss
from risk.models import RiskProfile
from trading.comparison import (
    EXIT_KIND_NAMES,
    Divergence,
    Kind,
    divergences,
    exchange_snapshot,
    exit_sent_recently,
)
from trading.gateway import exchange_gateway
from trading.models import Position, StreamState, Symbol, TradingSwitch
from trading.selectors import realized_pnl_today

logger = logging.getLogger(__name__)

LEASE_NAME = "sentinel"
LEASE_SECONDS = 240


@dataclass(frozen=True)
class Finding:
    """One problem the sentinel found; becomes an alert unless raised within the window."""

    key: str
    severity: str
    message: str
    symbol: Symbol | None = None


@dataclass
class SentinelReport:
    skipped: bool = False
    symbols: int = 0
    positions: int = 0
    requests: int = 0
    weight: int = 0
    findings: list[Finding] = field(default_factory=list)
    alerts_raised: int = 0
    error: str = ""

    def summary(self) -> str:
        if self.skipped:
            return "sentinel: skipped (previous pass still running)"
        line = (
            f"sentinel: {self.symbols} symbol(s), {self.positions} open position(s), "
            f"{self.requests} request(s), {len(self.findings)} finding(s), "
            f"{self.alerts_raised} new alert(s)"
        )
        for finding in self.findings:
            line += f"\n  [{finding.severity}] {finding.message}"
        return line


def sentinel_pass(*, gateway: ExchangeGateway | None = None) -> SentinelReport:
    """Run every health check once and raise an alert for each problem found."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not lease_claim(name=LEASE_NAME, owner=owner, seconds=LEASE_SECONDS):
        return SentinelReport(skipped=True)
    rules = monitoring_settings()
    report = SentinelReport()
    started_at = timezone.now()
    requests_before = weight_before = 0
    try:
        now = timezone.now()
        report.findings += _heartbeat_findings(rules=rules, now=now)
        report.findings += _stream_findings(now=now)
        positions = list(
            Position.objects.filter(status__in=Position.OPEN_STATUSES)
            .select_related("symbol")
            .prefetch_related("orders")
        )
        symbols = list(Symbol.objects.filter(enabled=True))
        report.positions = len(positions)
        report.symbols = len({s.name for s in symbols} | {p.symbol.name for p in positions})
        try:
            gateway = gateway or exchange_gateway()
            requests_before, weight_before = gateway.request_count, gateway.weight_used
            snapshot = exchange_snapshot(gateway=gateway)  # every position and open order
            exchange_positions, orders = snapshot.positions, snapshot.orders
        except RateLimited as exc:
            # Reachable, but asking us to wait (or our own minute budget is spent): a different
            # problem from a dead connection, and an operator should read it as such.
            report.findings.append(
                Finding(
                    key="sentinel.exchange_rate_limited",
                    severity="warning",
                    message=f"The exchange could not be read this pass, rate limited: {exc}",
                )
            )
        except ArenaError as exc:
            report.findings.append(
                Finding(
                    key="sentinel.exchange_unreachable",
                    severity="critical",
                    message=f"The exchange cannot be reached: {type(exc).__name__}: {exc}",
                )
            )
        else:
            report.findings += _position_findings(
                rules=rules,
                positions=positions,
                symbols=symbols,
                exchange_positions=exchange_positions,
                orders=orders,
                now=now,
            )
        report.findings += _switch_findings(positions=positions, now=now)
        for finding in report.findings:
            alert = alert_raise(
                key=finding.key,
                severity=finding.severity,
                message=finding.message,
                symbol=finding.symbol,
                repeat_seconds=rules.alert_repeat_seconds,
            )
            report.alerts_raised += alert is not None
        alerts_requeue_lost()
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        logger.exception("[Sentinel] pass failed")
    finally:
        if gateway is not None:
            report.requests = gateway.request_count - requests_before
            report.weight = max(0, gateway.weight_used - weight_before)
        heartbeat_record(
            process=Heartbeat.Process.SENTINEL,
            started_at=started_at,
            finished_at=timezone.now(),
            requests=report.requests,
            weight=report.weight,
            positions=report.positions,
            actions=report.alerts_raised,
            error=report.error,
            keep_minutes=max(rules.heartbeat_keep_minutes, 60 * 24),
        )
        lease_release(name=LEASE_NAME, owner=owner, error=report.error)
    return report


# --- checks ----------------------------------------------------------------------------------
def _heartbeat_findings(*, rules: MonitoringSettings, now: datetime) -> list[Finding]:
    latest_ok = (
        Heartbeat.objects.filter(process=Heartbeat.Process.GUARD, ok=True)
        .order_by("-finished_at")
        .first()
    )
    stale_after = timedelta(seconds=rules.heartbeat_stale_seconds)
    if latest_ok is not None and latest_ok.finished_at >= now - stale_after:
        return []
    if (
        latest_ok is None
        and not Heartbeat.objects.filter(process=Heartbeat.Process.SENTINEL).exists()
    ):
        # The sentinel's very first pass runs beside the guard's first: nothing is overdue yet.
        # From its next pass on, a guard that never completed one is reported.
        return []
    latest = Heartbeat.objects.filter(process=Heartbeat.Process.GUARD).order_by("-finished_at")
    last = latest.first()
    if latest_ok is None:
        since = "has never completed a pass"
    else:
        age = int((now - latest_ok.finished_at).total_seconds())
        since = f"has not completed a pass for {age} s"
    detail = f" (last pass failed: {last.error})" if last is not None and not last.ok else ""
    return [
        Finding(
            key="sentinel.guard_stale",
            severity="critical",
            message=f"The guard {since}{detail}: stops are not being checked.",
        )
    ]


# The user data stream may be down this long (a reconnect with backoff) before it is reported.
STREAM_DOWN_AFTER = timedelta(seconds=60)


def _stream_findings(*, now: datetime) -> list[Finding]:
    """The user data stream down (or silent) for longer than a minute. Where it never ran,
    nothing: the guard's passes record every close without it."""
    state = StreamState.objects.order_by("id").first()
    if state is None:
        return []
    if not state.connected:
        down_since = state.since
    elif state.updated_at < now - STREAM_DOWN_AFTER:
        down_since = state.updated_at  # the process stopped reporting: died or hung
    else:
        return []
    if now - down_since <= STREAM_DOWN_AFTER:
        return []
    age = int((now - down_since).total_seconds())
    detail = f" ({state.error})" if state.error else ""
    return [
        Finding(
            key="sentinel.stream_down",
            severity="warning",
            message=f"The user data stream has been down for {age} s{detail}: closes are "
            "recorded by the guard's passes meanwhile, seconds later.",
        )
    ]


def _position_findings(
    *,
    rules: MonitoringSettings,
    positions: list[Position],
    symbols: list[Symbol],
    exchange_positions: dict[str, ExchangePosition],
    orders: dict[str, list[ExchangeOrder]],
    now: datetime,
) -> list[Finding]:
    """Every symbol with a record or a position on the exchange: any position the exchange
    holds without both exits, any record whose status the exchange contradicts, drift."""
    by_symbol = {p.symbol.name: p for p in positions}
    configured = {s.name: s for s in symbols} | {p.symbol.name: p.symbol for p in positions}
    if set(exchange_positions) - set(configured):
        configured |= {s.name: s for s in Symbol.objects.filter(name__in=set(exchange_positions))}

    found = divergences(
        held=exchange_positions,
        orders=orders,
        records=by_symbol,
        now=now,
        exit_on_its_way=lambda position, kind: exit_sent_recently(position, kind, now=now),
        pnl_drift_limit=rules.pnl_drift_usd,
    )
    return [_finding(d, configured.get(d.symbol), rules) for d in found]


def _finding(divergence: Divergence, symbol: Symbol | None, rules: MonitoringSettings) -> Finding:
    name, live, position = divergence.symbol, divergence.held, divergence.record
    if divergence.kind == Kind.EXIT_MISSING:
        status = position.status if position is not None else "no record here"
        return Finding(
            key=f"sentinel.exit_missing.{name}.{divergence.exit_kind}",
            severity="critical",
            message=f"{name} {live.side} ({status}): no "
            f"{EXIT_KIND_NAMES[divergence.exit_kind]} on the exchange.",
            symbol=symbol,
        )
    if divergence.kind == Kind.UNRECORDED_POSITION:
        return Finding(
            key=f"sentinel.unrecorded_position.{name}",
            severity="critical",
            message=f"{name}: {live.side} {live.quantity} open on the exchange with no record "
            "here.",
            symbol=symbol,
        )
    if divergence.kind == Kind.POSITION_MISSING:
        return Finding(
            key=f"sentinel.position_missing.{name}",
            severity="warning",
            message=f"{name}: {position.status} here ({position.side} "
            f"{position.quantity}) but flat on the exchange; the guard should "
            + (
                "resolve the entry."
                if position.status == Position.Status.OPENING
                else "record the close."
            ),
            symbol=symbol,
        )
    if divergence.kind == Kind.STATUS_CONTRADICTED:
        return Finding(
            key=f"sentinel.status_contradicted.{name}",
            severity="critical",
            message=f"{name}: {position.status} here, but the exchange holds "
            f"{live.side} {live.quantity}.",
            symbol=symbol,
        )
    if divergence.kind == Kind.QUANTITY_MISMATCH:
        return Finding(
            key=f"sentinel.position_mismatch.{name}",
            severity="critical",
            message=f"{name}: here {position.side} {position.quantity}, on the exchange "
            f"{live.side} {live.quantity}.",
            symbol=symbol,
        )
    return Finding(
        key=f"sentinel.pnl_drift.{name}",
        severity="warning",
        message=f"{name}: unrealized PnL here {divergence.ours:.2f} USDT, on the exchange "
        f"{live.unrealized_pnl:.2f} USDT (drift {divergence.drift:.2f} > "
        f"{rules.pnl_drift_usd.normalize():f}); entry here "
        f"{position.entry_price.normalize():f}, on the exchange "
        f"{live.entry_price.normalize():f}.",
        symbol=symbol,
    )


def _switch_findings(*, positions: list[Position], now: datetime) -> list[Finding]:
    switch = TradingSwitch.objects.filter(id=1).first()
    enabled = switch.enabled if switch is not None else True
    findings = []
    if not enabled and positions:
        findings.append(
            Finding(
                key="sentinel.halted_with_positions",
                severity="warning",
                message=f"Trading is halted ({switch.reason or 'no reason given'}) with "
                f"{len(positions)} position(s) open: exits still work, no new entries.",
            )
        )
    profile = RiskProfile.objects.filter(is_active=True).first()
    if enabled and profile is not None and profile.daily_loss_limit_usd is not None:
        denial = check_daily_loss(
            realized_today=realized_pnl_today(now=now), limit=profile.daily_loss_limit_usd
        )
        if denial:
            findings.append(
                Finding(
                    key="sentinel.enabled_over_daily_loss",
                    severity="critical",
                    message=f"Trading is enabled although {denial}.",
                )
            )
    return findings
