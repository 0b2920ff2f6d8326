"""Binance's rules the bot meets head-on: moving a stop under one closePosition stop per side
(-4130), the position keeping a stop at every instant under either answer to "what happens to
exits on flat"; and a hedge-mode account refused on the exchange's real answer."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from core.errors import OrderRejected
from exchange.gateway import ExchangeGateway, _account_mode_checked
from tests.support.exchange import exchange_quantity
from trading.models import Order, Position, Symbol
from trading.services import OpenOutcome, position_open, position_replace_stop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["keep", "expire"])
def exit_on_flat(request: pytest.FixtureRequest, paper: object) -> str:
    paper.set_options(exit_on_flat=request.param)
    return request.param


@pytest.fixture
def long_btc(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway, exit_on_flat: str
) -> Position:
    return position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway).position


@pytest.fixture
def stops_at_each_cancel(paper_server: object) -> Iterator[list[int]]:
    """How many stops of BTCUSDT the exchange holds whenever a conditional order is cancelled."""
    engine = paper_server.exchange.engine
    seen: list[int] = []
    original = engine.cancel_algo

    def watched(p: object) -> object:
        with engine.lock:
            seen.append(
                sum(
                    1
                    for a in engine.algos.values()
                    if a.is_open and a.symbol == "BTCUSDT" and a.order_type == "STOP_MARKET"
                )
            )
        return original(p)

    engine.cancel_algo = watched
    try:
        yield seen
    finally:
        engine.cancel_algo = original


def _stops(paper: object) -> list[dict[str, object]]:
    return [
        o
        for o in paper.open_orders()["algo_orders"]
        if o["symbol"] == "BTCUSDT" and o["orderType"] == "STOP_MARKET"
    ]


def test_replace_stop_when_close_position_stop_open_then_reduce_only_stop_before_cancel(
    scenario_market: object,
    long_btc: Position,
    recording_gateway: ExchangeGateway,
    stops_at_each_cancel: list[int],
) -> None:
    new = position_replace_stop(
        position=long_btc, stop_price=Decimal("99800"), gateway=recording_gateway
    )

    stops = _stops(scenario_market)
    assert [(s["triggerPrice"], s["closePosition"], s["reduceOnly"]) for s in stops] == [
        ("99800.00", False, True)
    ]
    assert Decimal(stops[0]["quantity"]) == exchange_quantity(scenario_market, "BTCUSDT")
    assert stops_at_each_cancel == [2]  # the old stop went only once the new one stood
    new.refresh_from_db()
    assert (new.reduce_only, new.close_position, new.quantity) == (True, False, long_btc.quantity)


def test_replace_stop_when_moved_twice_then_one_stop_at_the_last_price(
    scenario_market: object,
    long_btc: Position,
    recording_gateway: ExchangeGateway,
    stops_at_each_cancel: list[int],
) -> None:
    position_replace_stop(position=long_btc, stop_price=Decimal("99800"), gateway=recording_gateway)

    position_replace_stop(position=long_btc, stop_price=Decimal("99850"), gateway=recording_gateway)

    assert [s["triggerPrice"] for s in _stops(scenario_market)] == ["99850.00"]
    assert stops_at_each_cancel == [2, 2]


def test_replace_stop_when_new_stop_fires_then_whole_position_closed(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    position_replace_stop(position=long_btc, stop_price=Decimal("99800"), gateway=recording_gateway)

    scenario_market.set_price("BTCUSDT", "99700")

    assert exchange_quantity(scenario_market, "BTCUSDT") == 0


def test_replace_stop_when_replacement_refused_then_old_stop_kept(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    old = [s["triggerPrice"] for s in _stops(scenario_market)]

    with pytest.raises(OrderRejected):
        # Above the mark: the replacement would trigger at once (-2021) and is refused.
        position_replace_stop(
            position=long_btc, stop_price=Decimal("100500"), gateway=recording_gateway
        )

    assert [s["triggerPrice"] for s in _stops(scenario_market)] == old
    assert Order.objects.filter(purpose="SL", status="REJECTED").count() == 1


def test_open_when_account_switched_to_hedge_mode_then_refused_with_nothing_sent(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.client.fapiPrivatePostPositionSideDual({"dualSidePosition": "true"})
    _account_mode_checked.clear()  # this process may have seen one-way mode a moment ago
    orders_before = scenario_market.stats()["requests"].get("POST /fapi/v1/order", 0)

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.status == OpenOutcome.REFUSED
    assert "hedge mode" in outcome.reason
    assert scenario_market.stats()["requests"].get("POST /fapi/v1/order", 0) == orders_before
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0
    recording_gateway.client.fapiPrivatePostPositionSideDual({"dualSidePosition": "false"})
    _account_mode_checked.clear()
