"""Reads of the watchers' rules and heartbeats."""

from __future__ import annotations

from core.models import Heartbeat, MonitoringSettings


def monitoring_settings() -> MonitoringSettings:
    """Return the guard's and sentinel's rules (created with defaults on first use)."""
    return MonitoringSettings.load()


def heartbeat_latest(*, process: str) -> Heartbeat | None:
    """Return the most recent finished pass of ``process`` (guard or sentinel), if any."""
    return Heartbeat.objects.filter(process=process).order_by("-finished_at").first()
