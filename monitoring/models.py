"""Monitoring data: alerts and their throttle. The watchers' rules, leases and heartbeats live in
``core``; the guard's protection state, exchange view and stream state in ``trading``."""

from __future__ import annotations

from django.db import models


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
