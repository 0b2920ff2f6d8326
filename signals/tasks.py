"""Celery tasks of the signals app: thin wrappers that take ids and call one service each."""

from __future__ import annotations

from celery import shared_task

from signals.cycles import trade_cycle_run


# The schedule sets ``expires`` to one interval (PeriodicTask.expire_seconds), so a cycle that
# waited that long is dropped for the next one. The soft limit leaves room for an LLM call
# (capped at 60 s in signals.services) and the exchange requests around it; the hard limit stays
# under the symbol lock's 120 s lease (trading.locks), so a killed cycle never overlaps the next
# holder. Running twice is safe: the order path derives client order ids from its own rows and
# holds the symbol lock, and a manual signal is claimed once.
# The name predates the move to this app; Beat's schedules (rows in the database) and the queue
# routes store it, so it stays.
@shared_task(
    name="trading.tasks.trade_cycle_task",
    ignore_result=True,
    acks_late=True,
    soft_time_limit=100,
    time_limit=115,
)
def trade_cycle_task(symbol_id: int) -> None:
    """One trade cycle of one symbol: signal, risk, orders."""
    trade_cycle_run(symbol_id=symbol_id)
