"""Celery tasks of the dashboard: thin wrappers around its services."""

from __future__ import annotations

from celery import shared_task

from dashboard.services import equity_snapshot_record


@shared_task(
    name="dashboard.tasks.equity_snapshot_task",
    ignore_result=True,
    soft_time_limit=30,
    time_limit=45,
)
def equity_snapshot_task() -> None:
    """Record one equity snapshot (one balance request). Safe to run twice: one more point."""

    equity_snapshot_record()
