"""Monitoring data: the watchers' rules, their leases and heartbeats, protection state, alerts.

Models hold data and single-row invariants; the guard (``trading.guard``), the sentinel
(``monitoring.sentinel``) and ``monitoring.services`` do the work.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

MONEY = {"max_digits": 24, "decimal_places": 10}

# Upper bounds: a debounce of 10^11 s silently switched the guard's re-attach off.
HOUR = 3600
MAX_REATTACH_DEBOUNCE_SECONDS = HOUR
MAX_ALERT_REPEAT_SECONDS = 24 * HOUR
MAX_HEARTBEAT_STALE_SECONDS = HOUR
MAX_GUARD_LEASE_SECONDS = HOUR
MAX_HEARTBEAT_KEEP_MINUTES = 7 * 24 * 60
MAX_PNL_DRIFT_USD = Decimal("1000000")


class MonitoringSettings(models.Model):
    """The rules of the guard and the sentinel. A single row, edited in the admin."""

    class UnknownPositionPolicy(models.TextChoices):
        REPORT = "report", "Report only (alert; leave it alone, unprotected)"
        # Stored as "adopt": the value predates the label.
        ADOPT = "adopt", "Protect (record it here; the guard keeps its stop-loss and take-profit)"
        CLOSE = "close", "Close (record it here, then close it at market)"

    reattach_debounce_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(5), MaxValueValidator(MAX_REATTACH_DEBOUNCE_SECONDS)],
        help_text="Seconds between two attempts to re-attach a missing stop-loss or take-profit "
        "of the same symbol (at least 5). Binance can hide a new conditional order from "
        "open-order queries for ~30 s, so shorter values risk a second stop.",
    )
    unknown_position_policy = models.CharField(
        max_length=8,
        choices=UnknownPositionPolicy.choices,
        default=UnknownPositionPolicy.ADOPT,
        help_text="What the guard does with a position on the exchange that has no record here "
        "(opened by hand): protect it (default), only report it, or close it. Each is alerted.",
    )
    alert_repeat_seconds = models.PositiveIntegerField(
        default=900,
        validators=[MinValueValidator(60), MaxValueValidator(MAX_ALERT_REPEAT_SECONDS)],
        help_text="The same alert (same key) is not raised again within this many seconds "
        "(at least 60).",
    )
    pnl_drift_usd = models.DecimalField(
        **MONEY,
        default=Decimal("5"),
        help_text="The sentinel alerts when this system's unrealized PnL of a position differs "
        "from the exchange's by more than this many USDT.",
    )
    heartbeat_stale_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(10), MaxValueValidator(MAX_HEARTBEAT_STALE_SECONDS)],
        help_text="The sentinel alerts when the guard has not finished a pass for this many "
        "seconds (at least 10).",
    )
    guard_lease_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(10), MaxValueValidator(MAX_GUARD_LEASE_SECONDS)],
        help_text="How long a guard pass holds its lease. A pass that dies keeps the next ones "
        "out for at most this long; a live pass should finish well within it (at least 10).",
    )
    heartbeat_keep_minutes = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_HEARTBEAT_KEEP_MINUTES)],
        help_text="Heartbeats older than this many minutes are deleted (at least 1).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "monitoring settings"
        verbose_name_plural = "monitoring settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="single_monitoring_settings"),
            models.CheckConstraint(
                condition=Q(
                    reattach_debounce_seconds__gte=1,
                    reattach_debounce_seconds__lte=MAX_REATTACH_DEBOUNCE_SECONDS,
                    alert_repeat_seconds__lte=MAX_ALERT_REPEAT_SECONDS,
                    heartbeat_stale_seconds__lte=MAX_HEARTBEAT_STALE_SECONDS,
                    guard_lease_seconds__lte=MAX_GUARD_LEASE_SECONDS,
                    heartbeat_keep_minutes__lte=MAX_HEARTBEAT_KEEP_MINUTES,
                ),
                name="monitoring_settings_durations_in_range",
            ),
        ]

    def __str__(self) -> str:
        return "Monitoring settings"

    @classmethod
    def load(cls) -> MonitoringSettings:
        settings, _ = cls.objects.get_or_create(id=1)
        return settings

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.pnl_drift_usd is not None and not (0 < self.pnl_drift_usd <= MAX_PNL_DRIFT_USD):
            errors["pnl_drift_usd"] = f"Must be positive and at most {MAX_PNL_DRIFT_USD} USDT."
        if (
            self.heartbeat_stale_seconds is not None
            and self.heartbeat_keep_minutes is not None
            and self.heartbeat_keep_minutes * 60 < self.heartbeat_stale_seconds
        ):
            errors["heartbeat_keep_minutes"] = (
                "Keep heartbeats at least as long as the stale-heartbeat threshold, or the "
                "sentinel would find none."
            )
        if errors:
            raise ValidationError(errors)


class Lease(models.Model):
    """A named lease (guard, sentinel) held by one pass at a time, claimed by conditional UPDATE.

    A pass that finds the lease held skips and counts the skip, so passes never pile up.
    """

    name = models.CharField(max_length=32, unique=True)
    owner = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    skipped_passes = models.PositiveBigIntegerField(
        default=0, help_text="Passes that found the previous one still running and skipped."
    )
    last_error = models.CharField(
        max_length=255,
        blank=True,
        help_text="The error of the last failed pass, until a pass succeeds again.",
    )
    paused_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The exchange rate-limited or banned us: no pass sends a request before this "
        "time (every request during a Binance ban lengthens it).",
    )

    def __str__(self) -> str:
        return f"{self.name} lease ({self.owner or 'free'})"


class Heartbeat(models.Model):
    """One finished pass of the guard or the sentinel: when, how long, what it cost."""

    class Process(models.TextChoices):
        GUARD = "guard"
        SENTINEL = "sentinel"

    process = models.CharField(max_length=8, choices=Process.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(db_index=True)
    duration_ms = models.PositiveIntegerField()
    requests = models.PositiveIntegerField(help_text="Requests sent to the exchange.")
    weight = models.PositiveIntegerField(
        help_text="Request weight used in the current minute as the exchange last reported it "
        "(X-MBX-USED-WEIGHT-1M) at the end of the pass."
    )
    positions = models.PositiveIntegerField(default=0, help_text="Open positions looked at.")
    actions = models.PositiveIntegerField(
        default=0, help_text="Orders placed or cancelled, positions recorded or adopted."
    )
    ok = models.BooleanField(default=True)
    error = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-finished_at"]
        indexes = [models.Index(fields=["process", "-finished_at"])]

    def __str__(self) -> str:
        return f"{self.process} {self.finished_at:%H:%M:%S} {self.duration_ms}ms"


class ProtectionState(models.Model):
    """The guard's memory of one concern of one symbol: a missing stop-loss, take-profit, or a
    position on the exchange with no record here.

    It makes the guard debounce its attempts, give up on rejections that retrying cannot fix
    until the rules change, and log a gap once instead of on every pass.
    """

    class Kind(models.TextChoices):
        STOP_LOSS = "SL", "Stop-loss"
        TAKE_PROFIT = "TP", "Take-profit"
        UNKNOWN_POSITION = "UNKNOWN", "Unknown position"

    symbol = models.ForeignKey(
        "trading.Symbol", on_delete=models.CASCADE, related_name="protection_states"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    position = models.ForeignKey(
        "trading.Position",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The position this state is about; a new position starts afresh.",
    )
    gap_since = models.DateTimeField(
        null=True, blank=True, help_text="When the guard found it missing; empty when in place."
    )
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="No attempt before this time (debounce)."
    )
    attempts = models.PositiveIntegerField(default=0)
    gave_up_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set after a rejection retrying cannot fix: no attempt until the rules "
        "change or an operator clears it.",
    )
    reason = models.CharField(max_length=255, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    rules_version = models.CharField(
        max_length=40,
        blank=True,
        help_text="Fingerprint of the symbol's filters and exit rules when the guard gave up.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["symbol", "kind"], name="one_state_per_symbol_kind")
        ]
        ordering = ["symbol__name", "kind"]

    def __str__(self) -> str:
        state = "gave up" if self.gave_up_at else ("gap" if self.gap_since else "ok")
        return f"{self.symbol} {self.kind}: {state}"


class Alert(models.Model):
    """Something a person should know. Stored, shown in the admin, sent to Telegram."""

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class Delivery(models.TextChoices):
        PENDING = "pending", "Pending (queued for Telegram)"
        SENT = "sent"
        FAILED = "failed", "Failed (gave up after retries)"
        NOT_CONFIGURED = "stored", "Stored only (no Telegram token configured)"

    key = models.CharField(
        max_length=120, db_index=True, help_text="What it is about; repeats are suppressed."
    )
    severity = models.CharField(max_length=8, choices=Severity.choices)
    message = models.TextField()
    symbol = models.ForeignKey(
        "trading.Symbol", null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    delivery = models.CharField(
        max_length=8, choices=Delivery.choices, default=Delivery.PENDING, db_index=True
    )
    delivery_attempts = models.PositiveIntegerField(default=0)
    delivery_claimed_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_error = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.key}"


class AlertThrottle(models.Model):
    """When an alert key was last raised; claimed by conditional UPDATE to suppress repeats."""

    key = models.CharField(max_length=120, unique=True)
    last_raised_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.key} @ {self.last_raised_at:%Y-%m-%d %H:%M:%S}"


class StreamState(models.Model):
    """The user data stream process as it last reported itself: connected or not since when,
    its last event and how late it arrived."""

    name = models.CharField(max_length=32, unique=True, default="user-data")
    connected = models.BooleanField(default=False)
    since = models.DateTimeField(help_text="When it last connected or disconnected.")
    updated_at = models.DateTimeField(help_text="The process's latest report (every few s).")
    last_event_at = models.DateTimeField(null=True, blank=True)
    lag_ms = models.IntegerField(
        null=True, blank=True, help_text="Latest event: received minus the exchange's event time."
    )
    events = models.PositiveIntegerField(default=0, help_text="Events applied since it started.")
    reconciles = models.PositiveIntegerField(
        default=0, help_text="REST reconciles of a gap (reconnect, expired key, restart)."
    )
    last_reconcile_at = models.DateTimeField(
        null=True, blank=True, help_text="When its latest REST reconcile finished."
    )
    error = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        state = "connected" if self.connected else "down"
        return f"stream {state} since {self.since:%H:%M:%S}"


class ExchangeView(models.Model):
    """What the exchange held at the guard's last pass: the one row pages read instead of the
    exchange (a page view must never spend the bot's request budget)."""

    taken_at = models.DateTimeField(help_text="When the guard read the exchange.")
    positions = models.JSONField(
        default=list,
        help_text="Non-zero positions: symbol, side, quantity, entry, mark, unrealized PnL, "
        "leverage (decimals as strings).",
    )
    orders = models.JSONField(
        default=list,
        help_text="Open orders, regular and conditional: symbol, type, side, stop price.",
    )

    class Meta:
        verbose_name = "exchange view (guard's last read)"

    def __str__(self) -> str:
        return f"exchange at {self.taken_at:%H:%M:%S}: {len(self.positions)} position(s)"
