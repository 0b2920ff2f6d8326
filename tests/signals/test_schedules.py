"""Trade-cycle schedules in django-celery-beat follow the strategies and symbols."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from risk.services import rule_save
from signals.schedules import CYCLE_TASK, cycle_schedules_sync
from trading.models import Strategy, Symbol


def _cycles() -> dict[str, PeriodicTask]:
    return {t.name: t for t in PeriodicTask.objects.filter(task=CYCLE_TASK)}


def test_cycle_schedules_sync_when_defaults_loaded_then_one_task_per_strategy(
    defaults: None,
) -> None:
    result = cycle_schedules_sync()

    tasks = _cycles()
    assert sorted(result.created) == sorted(tasks) and len(tasks) == 6
    btc = tasks["cycle: BTCUSDT"]
    assert json.loads(btc.args) == [Symbol.objects.get(name="BTCUSDT").id]
    assert (btc.queue, btc.expire_seconds, btc.enabled) == ("cycles", 300, True)
    assert (btc.interval.every, btc.interval.period) == (300, IntervalSchedule.SECONDS)
    assert tasks["cycle: ETHUSDT"].enabled is False
    # One shared IntervalSchedule for the six 300 s strategies.
    assert len({t.interval_id for t in tasks.values()}) == 1


def test_cycle_schedules_sync_when_nothing_changed_then_no_write_and_no_reload(
    defaults: None,
) -> None:
    cycle_schedules_sync()
    reload_mark = PeriodicTasks.last_change()

    result = cycle_schedules_sync()

    assert not result.changed
    assert PeriodicTasks.last_change() == reload_mark


def test_cycle_schedules_sync_when_interval_changed_then_task_updated_and_beat_told(
    defaults: None,
) -> None:
    cycle_schedules_sync()
    reload_mark = PeriodicTasks.last_change()
    Strategy.objects.filter(symbol__name="BTCUSDT").update(interval_seconds=60)

    result = cycle_schedules_sync()

    btc = _cycles()["cycle: BTCUSDT"]
    assert result.updated == ["cycle: BTCUSDT"]
    assert (btc.interval.every, btc.expire_seconds) == (60, 60)
    assert PeriodicTasks.last_change() > reload_mark


def test_cycle_schedules_sync_when_symbol_disabled_then_task_disabled(defaults: None) -> None:
    cycle_schedules_sync()
    Symbol.objects.filter(name="BNBUSDT").update(enabled=False)

    result = cycle_schedules_sync()

    assert result.updated == ["cycle: BNBUSDT"]
    assert _cycles()["cycle: BNBUSDT"].enabled is False


def test_cycle_schedules_sync_when_strategy_deleted_then_task_disabled(defaults: None) -> None:
    cycle_schedules_sync()
    Strategy.objects.filter(symbol__name="BNBUSDT").delete()

    result = cycle_schedules_sync()

    assert result.disabled == ["cycle: BNBUSDT"]
    assert _cycles()["cycle: BNBUSDT"].enabled is False


def test_cycle_schedules_sync_when_task_edited_by_hand_then_restored_from_strategy(
    defaults: None,
) -> None:
    cycle_schedules_sync()
    PeriodicTask.objects.filter(name="cycle: BTCUSDT").update(queue="default", expire_seconds=None)

    result = cycle_schedules_sync()

    btc = _cycles()["cycle: BTCUSDT"]
    assert result.updated == ["cycle: BTCUSDT"]
    assert (btc.queue, btc.expire_seconds) == ("cycles", 300)


def test_sync_schedules_command_when_run_twice_then_reports_created_then_nothing(
    defaults: None, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("sync_schedules")
    first = capsys.readouterr().out
    call_command("sync_schedules")
    second = capsys.readouterr().out

    assert "created: cycle: BTCUSDT" in first
    assert second.strip() == "Cycle schedules already match the strategies."


def test_strategy_save_when_committed_then_schedule_follows_without_command(
    defaults: None, django_capture_on_commit_callbacks: object
) -> None:
    strategy = Strategy.objects.get(symbol__name="BTCUSDT")
    strategy.interval_seconds = 120

    with django_capture_on_commit_callbacks(execute=True):
        rule_save(instance=strategy, actor="ops")

    btc = _cycles()["cycle: BTCUSDT"]
    assert (btc.interval.every, btc.expire_seconds) == (120, 120)


def test_symbol_save_when_disabled_and_committed_then_schedule_disabled(
    defaults: None, django_capture_on_commit_callbacks: object
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        cycle_schedules_sync()
    symbol = Symbol.objects.get(name="BTCUSDT")
    symbol.enabled = False

    with django_capture_on_commit_callbacks(execute=True):
        rule_save(instance=symbol, actor="ops")

    assert _cycles()["cycle: BTCUSDT"].enabled is False


def test_strategy_save_when_not_committed_then_schedule_unchanged(defaults: None) -> None:
    # Inside the test's transaction nothing commits: a rolled-back edit reschedules nothing.
    Strategy.objects.get(symbol__name="BTCUSDT").save()

    assert _cycles() == {}
