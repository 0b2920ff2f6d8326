"""trade_cycle_task: a thin task on its own queue, with limits, safe to run twice."""

from __future__ import annotations

from typing import Any

import pytest

from arena.celery import app
from signals.models import SignalDecision
from signals.services import manual_signal_create
from signals.tasks import trade_cycle_task
from trading.models import Position, Strategy, Symbol


def test_trade_cycle_task_when_routed_then_cycles_queue_late_ack_and_time_limits() -> None:
    route = app.amqp.router.route({}, trade_cycle_task.name, args=[1])

    assert route["queue"].name == "cycles"
    assert trade_cycle_task.acks_late is True
    assert trade_cycle_task.soft_time_limit < trade_cycle_task.time_limit <= 120
    assert trade_cycle_task.ignore_result is True


def test_guard_and_cycles_when_routed_then_on_separate_queues() -> None:
    guard = app.amqp.router.route({}, "trading.tasks.guard_pass_task", args=[])
    sentinel = app.amqp.router.route({}, "monitoring.tasks.sentinel_pass_task", args=[])

    assert {guard["queue"].name, sentinel["queue"].name} == {"guard", "sentinel"}


# The order path sends the stop-loss and take-profit from two threads; they can only write to
# the SQLite test database when the test's own writes are committed, not held in a transaction.
@pytest.mark.django_db(transaction=True)
def test_trade_cycle_task_when_run_twice_with_one_manual_signal_then_one_protected_position(
    defaults: None, paper: Any
) -> None:
    btc = Symbol.objects.get(name="BTCUSDT")
    Strategy.objects.filter(symbol=btc).update(agent=Strategy.Agent.MANUAL)
    manual_signal_create(symbol=btc, action="LONG", created_by="ops")

    trade_cycle_task.apply(args=[btc.id])
    trade_cycle_task.apply(args=[btc.id])

    position = Position.objects.get(symbol=btc)
    assert (position.side, position.status) == ("LONG", "OPEN")
    assert position.take_profit_price and position.stop_loss_price
    actions = list(
        SignalDecision.objects.filter(symbol=btc).order_by("id").values_list("action", flat=True)
    )
    assert actions == ["LONG", "HOLD"]
    assert [p["symbol"] for p in paper.positions()] == ["BTCUSDT"]
