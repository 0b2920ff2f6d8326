"""``position_entry_resolve``: an entry left OPENING is settled from the exchange, whatever the
exchange holds under its client id. Against the paper exchange over HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.gateway import ExchangeGateway
from risk.selectors import risk_profile_for_symbol
from tests.support.exchange import exchange_exits, exchange_quantity
from trading.models import Order, Position, Symbol
from trading.services import OpenOutcome, _entry_intent_create, position_entry_resolve

pytestmark = pytest.mark.django_db(transaction=True)


def left_opening(symbol: Symbol) -> tuple[Position, Order]:
    """A LONG 0.011 whose entry was sent and whose answer never came."""
    position, entry = _entry_intent_create(
        symbol=symbol,
        side="LONG",
        quantity=Decimal("0.011"),
        profile=risk_profile_for_symbol(symbol=symbol),
        reason="t",
    )
    Order.objects.filter(pk=entry.pk).update(status=Order.Status.UNKNOWN)
    return position, entry


def test_resolve_when_entry_filled_then_open_with_fill_and_protected(
    scenario_market, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position, entry = left_opening(btc)
    recording_gateway.create_market_order(
        symbol="BTCUSDT",
        side="BUY",
        quantity=Decimal("0.011"),
        client_order_id=entry.client_order_id,
        reduce_only=False,
    )

    outcome = position_entry_resolve(position=position, gateway=recording_gateway)

    position.refresh_from_db()
    assert outcome.status == OpenOutcome.OPENED, outcome
    assert (position.status, position.quantity) == (Position.Status.OPEN, Decimal("0.011"))
    assert position.entry_price == Decimal("100000")
    assert set(exchange_exits(scenario_market, "BTCUSDT")) == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}


def test_resolve_when_entry_unknown_to_exchange_then_failed_and_symbol_free(
    scenario_market, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position, _ = left_opening(btc)

    outcome = position_entry_resolve(position=position, gateway=recording_gateway)

    position.refresh_from_db()
    assert outcome.status == OpenOutcome.FAILED, outcome
    assert position.status == Position.Status.FAILED
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0
    assert not Position.objects.filter(status__in=Position.OPEN_STATUSES).exists()


def test_resolve_when_entry_still_open_on_exchange_then_cancelled_first_and_failed_unfilled(
    scenario_market, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position, entry = left_opening(btc)
    # The exchange holds a resting order under the entry's client id (not filled yet).
    recording_gateway.client.fapiPrivatePostOrder(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.011",
            "price": "99000",
            "newClientOrderId": entry.client_order_id,
        }
    )
    assert len(scenario_market.open_orders()["orders"]) == 1

    outcome = position_entry_resolve(position=position, gateway=recording_gateway)

    position.refresh_from_db()
    entry.refresh_from_db()
    assert outcome.status == OpenOutcome.FAILED, outcome
    assert position.status == Position.Status.FAILED
    assert entry.status == Order.Status.CANCELED
    assert scenario_market.open_orders()["orders"] == []  # it can no longer fill behind our back
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0


def test_resolve_when_exchange_unreadable_then_left_opening_for_next_time(
    scenario_market, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    from exchange.retry import RetryPolicy

    position, _ = left_opening(btc)
    scenario_market.faults(
        kind="error", method="GET", path="/fapi/v1/order", status=503, count=1000
    )
    recording_gateway.retry_policy = RetryPolicy(max_total_seconds=1, sleep=lambda s: None)

    outcome = position_entry_resolve(position=position, gateway=recording_gateway)

    scenario_market.clear_faults()
    position.refresh_from_db()
    assert outcome.status == OpenOutcome.REFUSED, outcome
    assert position.status == Position.Status.OPENING
