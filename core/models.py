"""Process bookkeeping every layer shares: the watchers' rules, leases and heartbeats.

The tables keep their original names (``monitoring_*``): the models moved here so the guard
(``trading``) can use them without importing the monitoring app above it.
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
        db_table = "monitoring_monitoringsettings"
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

    class Meta:
        db_table = "monitoring_lease"

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
        db_table = "monitoring_heartbeat"
        ordering = ["-finished_at"]
        indexes = [models.Index(fields=["process", "-finished_at"])]

    def __str__(self) -> str:
        return f"{self.process} {self.finished_at:%H:%M:%S} {self.duration_ms}ms"
