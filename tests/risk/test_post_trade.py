"""The post-trade check against the paper exchange: partial closes of an excess, skips."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.gateway import ExchangeGateway
from risk.models import RiskProfile
from tests.support.exchange import exchange_exits, exchange_quantity
from trading.models import Position, Symbol, TradeEvent
from trading.post_trade import PostTradeOutcome, post_trade_check
from trading.services import position_open

pytestmark = pytest.mark.django_db(transaction=True)


def close_orders(paper: object) -> int:
    return paper.stats()["requests"].get("POST /fapi/v1/order", 0)


def test_check_when_trade_sized_by_engine_then_within_limits_and_nothing_sent(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position = position_open(
        symbol=btc, side="LONG", reason="t", gateway=recording_gateway
    ).position
    before = close_orders(scenario_market)

    outcome = post_trade_check(position=position, gateway=recording_gateway)

    assert outcome.status == PostTradeOutcome.WITHIN
    assert close_orders(scenario_market) == before
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")


def test_check_when_equity_halved_then_exactly_one_partial_close(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position = position_open(
        symbol=btc, side="LONG", reason="t", gateway=recording_gateway
    ).position
    halved = Decimal("1833.33") / 2
    before = close_orders(scenario_market)

    first = post_trade_check(position=position, gateway=recording_gateway, equity=halved)
    second = post_trade_check(position=position, gateway=recording_gateway, equity=halved)

    assert (first.status, second.status) == (PostTradeOutcome.PARTIAL, PostTradeOutcome.WITHIN)
    assert close_orders(scenario_market) == before + 1
    # Margin 550 vs allowed 275: the excess 0.0055 BTC is closed rounded down to 0.005.
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.006")
    assert len(exchange_exits(scenario_market, "BTCUSDT")) == 2
    position.refresh_from_db()
    assert (position.quantity, position.status) == (Decimal("0.006"), "OPEN")


def test_check_when_excess_below_min_qty_then_skipped_once_with_recorded_reason(
    scenario_market: object, bnb: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # Arrange: no tolerance, and an allowed margin 2.48 USDT below the position's 549.48:
    # the excess is 0.005 BNB, below the 0.01 minimum.
    position = position_open(
        symbol=bnb, side="SHORT", reason="t", gateway=recording_gateway
    ).position
    RiskProfile.objects.update(partial_close_tolerance_pct=Decimal("0"))
    equity = Decimal("547") / Decimal("0.3")
    before = sum(scenario_market.stats()["requests"].values())

    # Act: two guard passes
    first = post_trade_check(position=position, gateway=recording_gateway, equity=equity)
    second = post_trade_check(position=position, gateway=recording_gateway, equity=equity)

    # Assert
    assert (first.status, second.status) == (PostTradeOutcome.SKIPPED, PostTradeOutcome.SKIPPED)
    assert sum(scenario_market.stats()["requests"].values()) == before
    position.refresh_from_db()
    assert "below minQty 0.01" in position.skip_reason
    assert TradeEvent.objects.filter(kind="SKIPPED", position=position).count() == 1
    assert exchange_quantity(scenario_market, "BNBUSDT") == Decimal("-1.14")
    assert len(exchange_exits(scenario_market, "BNBUSDT")) == 2


def test_check_when_position_closed_then_not_open_and_nothing_read(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position = position_open(
        symbol=btc, side="LONG", reason="t", gateway=recording_gateway
    ).position
    Position.objects.filter(pk=position.pk).update(status="CLOSED")
    requests = recording_gateway.request_count

    outcome = post_trade_check(position=position, gateway=recording_gateway)

    assert outcome.status == PostTradeOutcome.NOT_OPEN
    assert recording_gateway.request_count == requests
