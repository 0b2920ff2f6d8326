"""Celery tasks: thin wrappers that take ids and call one service each."""

from __future__ import annotations

from celery import shared_task


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
    from trading.guard import guard_pass, guard_process_running

    if guard_process_running():
        return
    guard_pass()


# The schedule sets ``expires`` to one interval (PeriodicTask.expire_seconds), so a cycle that
# waited that long is dropped for the next one. The soft limit leaves room for an LLM call
# (capped at 60 s in signals.services) and the exchange requests around it; the hard limit stays
# under the symbol lock's 120 s lease (trading.locks), so a killed cycle never overlaps the next
# holder. Running twice is safe: the order path derives client order ids from its own rows and
# holds the symbol lock, and a manual signal is claimed once.
@shared_task(
    name="trading.tasks.trade_cycle_task",
    ignore_result=True,
    acks_late=True,
    soft_time_limit=100,
    time_limit=115,
)
def trade_cycle_task(symbol_id: int) -> None:
    """One trade cycle of one symbol: signal, risk, orders."""
    from trading.cycles import trade_cycle_run

    trade_cycle_run(symbol_id=symbol_id)
