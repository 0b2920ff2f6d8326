"""Trade cycles, the run_cycle command and the symbol lock."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from exchange.gateway import ExchangeGateway
from signals.cycles import CycleOutcome, trade_cycle_run
from signals.types import Decision
from tests.support.exchange import exchange_quantity
from trading.locks import SymbolBusy, symbol_lock
from trading.models import Position, Symbol, SymbolLock

from .race import run_cycle_after_barrier

transactional = pytest.mark.django_db(transaction=True)


@transactional
def test_cycle_when_long_signal_then_opens(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="t"), gateway=recording_gateway
    )

    assert (outcome.action, outcome.status) == ("LONG", "opened")
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")


@transactional
def test_cycle_when_same_direction_again_then_refused_as_duplicate(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="t"), gateway=recording_gateway
    )

    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="t"), gateway=recording_gateway
    )

    assert outcome.status == CycleOutcome.REFUSED
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")


@transactional
def test_cycle_when_signal_reverses_then_closes_and_does_not_open(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="t"), gateway=recording_gateway
    )

    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="SHORT", reason="t"), gateway=recording_gateway
    )

    assert outcome.status == "closed"
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0
    assert not Position.objects.filter(status__in=Position.OPEN_STATUSES).exists()


@transactional
def test_cycle_when_flat_then_closes_with_reason_signal(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="t"), gateway=recording_gateway
    )

    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="FLAT", reason="t"), gateway=recording_gateway
    )

    assert outcome.status == "closed"
    assert Position.objects.get().close_reason == "SIGNAL"


@transactional
def test_cycle_when_hold_then_nothing_sent(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="HOLD", reason="t"), gateway=recording_gateway
    )

    assert outcome.status == CycleOutcome.HELD
    assert recording_gateway.request_count == 0


@transactional
def test_run_cycle_when_signal_given_then_prints_and_second_run_prints_refusal(
    scenario_market: object, btc: Symbol, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("run_cycle", "--symbol", "btcusdt", "--signal", "long")
    call_command("run_cycle", "--symbol", "BTCUSDT", "--signal", "long")

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("BTCUSDT LONG: opened")
    assert out[1] == "BTCUSDT LONG: refused — a LONG position is already open"
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("symbol", "message"), [("NOPEUSDT", "Unknown symbol"), ("ETHUSDT", "disabled")]
)
def test_run_cycle_when_symbol_unknown_or_disabled_then_command_error(
    defaults: None, symbol: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("run_cycle", "--symbol", symbol, "--signal", "long")


@pytest.mark.django_db
def test_lock_when_held_by_another_worker_then_busy_until_it_expires(
    defaults: None, btc: Symbol
) -> None:
    SymbolLock.objects.create(
        symbol=btc, owner="other:1", expires_at=timezone.now() + timedelta(seconds=60)
    )

    with pytest.raises(SymbolBusy), symbol_lock(btc.pk):
        pass

    SymbolLock.objects.filter(symbol=btc).update(expires_at=timezone.now() - timedelta(seconds=1))
    with symbol_lock(btc.pk) as owner:
        assert SymbolLock.objects.get(symbol=btc).owner == owner
    assert SymbolLock.objects.get(symbol=btc).owner == ""


@pytest.mark.django_db
def test_lock_when_reentered_in_same_thread_then_allowed(defaults: None, btc: Symbol) -> None:
    with symbol_lock(btc.pk) as outer, symbol_lock(btc.pk) as inner:
        assert inner == outer
    assert SymbolLock.objects.get(symbol=btc).owner == ""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_cycle_when_two_processes_open_long_at_once_then_one_position_of_0_011(
    scenario_market: object, btc: Symbol
) -> None:
    # Arrange: two spawned processes with their own Django and connections, on this test
    # database and this paper exchange, released together by a barrier.
    db = connection.settings_dict
    env = {
        "DJANGO_SETTINGS_MODULE": "arena.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "EXCHANGE": "paper",
        "PAPER_EXCHANGE_URL": django_settings.PAPER_EXCHANGE_URL,
    }
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=run_cycle_after_barrier, args=(barrier, results, env, "BTCUSDT"))
        for _ in range(2)
    ]

    # Act
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=120)[0] for _ in workers)
    for worker in workers:
        worker.join(timeout=60)

    # Assert
    assert outcomes == ["opened", "refused"]
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")
    assert Position.objects.filter(status="OPEN").count() == 1
    assert scenario_market.stats()["orders_accepted"] == 3  # one entry, its stop and its target


@pytest.mark.django_db
def test_lock_when_holder_is_a_dead_process_of_this_host_then_taken_at_once(
    defaults: None, btc: Symbol
) -> None:
    import socket
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(gone.stdout)
    SymbolLock.objects.create(
        symbol=btc,
        owner=f"{socket.gethostname()[:30]}:{dead_pid}:abc",
        expires_at=timezone.now() + timedelta(seconds=120),
    )

    with symbol_lock(btc.pk) as owner:
        assert SymbolLock.objects.get(symbol=btc).owner == owner


@pytest.mark.django_db
def test_lock_when_holder_is_alive_or_on_another_host_then_busy(
    defaults: None, btc: Symbol
) -> None:
    import os
    import socket

    for holder in (f"{socket.gethostname()[:30]}:{os.getppid()}:abc", "elsewhere:1:abc"):
        SymbolLock.objects.update_or_create(
            symbol=btc,
            defaults={"owner": holder, "expires_at": timezone.now() + timedelta(seconds=120)},
        )
        with pytest.raises(SymbolBusy), symbol_lock(btc.pk):
            pass
