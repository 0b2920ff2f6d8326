"""Celery tasks of the monitoring app: thin wrappers around its services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="monitoring.tasks.sentinel_pass_task", ignore_result=True)
def sentinel_pass_task() -> None:
    """One sentinel pass: TP/SL presence, PnL drift, stale heartbeats, reachability."""
    from monitoring.sentinel import sentinel_pass

    sentinel_pass()
