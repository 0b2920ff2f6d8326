"""The paper exchange restarted from its state file: the bot finds everything where it left it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.exchange import (
    PROTECTED,
    SleepRecorder,
    exchange_exit_types,
    exchange_quantity,
    make_gateway,
)
from trading.guard import guard_pass
from trading.models import Position, Symbol
from trading.reconcile import reconcile
from trading.services import position_open

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def own_exchange(settings: Any, tmp_path: Path) -> Iterator[Any]:
    """A paper exchange of this test's own with a state file; ``restart()`` stops and starts it."""
    from paper.testing import PaperControl, PaperExchangeServer

    state = tmp_path / "paper-state.json"

    class Exchange:
        server = PaperExchangeServer().start(port=0, state_file=state)

        def point_settings(self) -> PaperControl:
            settings.EXCHANGE = "paper"
            settings.PAPER_EXCHANGE_URL = self.server.url
            return PaperControl(self.server.url)

        def restart(self) -> PaperControl:
            self.server.stop()
            self.server = PaperExchangeServer().start(port=0, state_file=state)
            return self.point_settings()

    exchange = Exchange()
    try:
        yield exchange
    finally:
        exchange.server.stop()


def test_guard_and_reconcile_when_exchange_restarted_from_state_then_all_consistent(
    own_exchange: Any, defaults: None
) -> None:
    control = own_exchange.point_settings()
    control.set_price("BTCUSDT", "100000")
    control.set_balance("USDT", "1833.33")
    btc = Symbol.objects.get(name="BTCUSDT")
    opened = position_open(
        symbol=btc, side="LONG", reason="test", gateway=make_gateway(sleep=SleepRecorder())
    )
    assert opened.ok, opened

    control = own_exchange.restart()
    report = guard_pass(gateway=make_gateway(sleep=SleepRecorder()))
    checked = reconcile(repair=False, gateway=make_gateway(sleep=SleepRecorder()))

    assert report.error == "", report.summary()
    assert report.positions == 1
    assert (report.reattached, report.closed, report.unknown) == ([], [], [])
    assert checked.ok, [str(d) for d in checked.differences]
    assert exchange_quantity(control, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(control, "BTCUSDT") == PROTECTED
    assert Position.objects.get().status == Position.Status.OPEN
