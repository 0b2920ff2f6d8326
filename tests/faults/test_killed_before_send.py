"""A worker killed after storing the entry intent and before sending it.

What such a worker leaves behind is exactly its committed rows: an OPENING position and an entry
order in INTENT, never sent. The restarted worker's guard pass, reconcile and next cycle must end
with exactly one position, protected, and nothing sent for the dead intent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from risk.selectors import risk_profile_for_symbol
from signals.cycles import trade_cycle_run
from signals.types import Decision
from tests.support.exchange import PROTECTED, accepted, exchange_exit_types, exchange_quantity
from tests.support.factories import backdate
from trading import services
from trading.guard import guard_pass
from trading.models import Order, Position, Symbol
from trading.reconcile import reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def test_restart_when_worker_died_between_intent_and_send_then_one_protected_position(
    btc_market: Any, btc: Symbol, patient_gateway: Any
) -> None:
    # Arrange: the rows a worker commits before it sends the entry, then dies.
    dead, entry = services._entry_intent_create(
        symbol=btc,
        side="LONG",
        quantity=Decimal("0.011"),
        profile=risk_profile_for_symbol(symbol=btc),
        reason="cycle of a worker that was killed",
    )
    backdate(dead, seconds=300)

    # Act: the restarted worker reconciles, the guard passes, the next cycle runs.
    reconcile(repair=True)
    guard_pass(gateway=patient_gateway)
    outcome = trade_cycle_run(
        symbol_id=btc.id, signal=Decision(action="LONG", reason="test"), gateway=patient_gateway
    )

    # Assert
    dead.refresh_from_db()
    entry.refresh_from_db()
    assert dead.status == Position.Status.FAILED
    assert entry.status != Order.Status.FILLED
    assert outcome.status == "opened", outcome
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 3  # one entry, one stop-loss, one take-profit
    assert Position.objects.filter(status__in=Position.OPEN_STATUSES).count() == 1
