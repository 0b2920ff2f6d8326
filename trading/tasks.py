"""Celery tasks: thin wrappers that take ids and call one service each."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="trading.tasks.guard_pass_task", ignore_result=True)
def guard_pass_task() -> None:
    """One guard pass: TP/SL on every open position, closes recorded."""
    from trading.guard import guard_pass

    guard_pass()


@shared_task(name="trading.tasks.trade_cycle_task", ignore_result=True)
def trade_cycle_task(symbol_id: int) -> None:
    """One trade cycle of one symbol: signal, risk, orders."""
    from trading.cycles import trade_cycle_run

    trade_cycle_run(symbol_id=symbol_id)
