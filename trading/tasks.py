"""Celery tasks: thin wrappers that take ids and call one service each."""

from __future__ import annotations

from celery import shared_task

from trading.guard import guard_pass, guard_process_running


# ``expires`` drops a pass that waited for a worker longer than one interval (Beat also sets it
# from the schedule's expire_seconds), and the lease inside guard_pass makes a pass that starts
# while the previous one still runs skip; together passes never pile up. The hard limit stays
# under the lease (MonitoringSettings.guard_lease_seconds, 60 s by default).
@shared_task(
    name="trading.tasks.guard_pass_task",
    ignore_result=True,
    expires=5,
    soft_time_limit=45,
    time_limit=55,
)
def guard_pass_task() -> None:
    """One guard pass: TP/SL on every open position, closes recorded; none while a guard process
    runs the passes itself."""

    if guard_process_running():
        return
    guard_pass()
