"""``manage.py emergency_close``: halt first, cancel every order, close every position, verify."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from risk.models import RuleChange
from tests.operator.conftest import exchange_order_count, exchange_quantity
from trading.models import ExchangeRequest, Position, TradingSwitch


@pytest.fixture
def two_positions(transactional_db: None, open_position) -> list[Position]:
    return [open_position("BTCUSDT", "LONG"), open_position("BNBUSDT", "SHORT")]


def test_emergency_close_when_two_positions_open_then_halted_first_and_flat(
    market, two_positions: list[Position]
) -> None:
    assert exchange_order_count(market) == 4  # a stop-loss and a take-profit each
    out = StringIO()

    call_command("emergency_close", "--yes", "--reason", "drill", stdout=out)

    assert market.positions() == []
    assert exchange_order_count(market) == 0
    switch = TradingSwitch.load()
    assert switch.enabled is False
    assert switch.reason == "emergency close: drill"
    halted_at = RuleChange.objects.get(model="trading.tradingswitch", field="enabled").changed_at
    first_cancel = ExchangeRequest.objects.filter(action__startswith="cancel").earliest(
        "created_at"
    )
    assert halted_at <= first_cancel.created_at
    for position in two_positions:
        position.refresh_from_db()
        assert position.status == Position.Status.CLOSED
        assert position.close_reason == Position.CloseReason.EMERGENCY
    assert "BTCUSDT: closed" in out.getvalue()
    assert "BNBUSDT: closed" in out.getvalue()


def test_emergency_close_when_a_close_is_rejected_then_left_open_with_its_exits_and_exit_2(
    market, two_positions: list[Position]
) -> None:
    # Symbols go in name order, one close each per round: BNBUSDT's three closes (1st, 3rd,
    # 5th request) are refused, and BTCUSDT's first two; its third goes through.
    market.faults(
        kind="error",
        method="POST",
        path="/fapi/v1/order",
        status=400,
        code=-2022,
        msg="ReduceOnly Order is rejected.",
        count=5,
    )
    out = StringIO()

    with pytest.raises(CommandError) as refused:
        call_command("emergency_close", "--yes", stdout=out)

    assert refused.value.returncode == 2
    assert "LEFT OPEN" in str(refused.value)
    assert "BNBUSDT: LEFT OPEN" in out.getvalue()
    assert exchange_quantity(market, "BNBUSDT") != 0
    assert exchange_quantity(market, "BTCUSDT") == 0
    # The position that could not be closed keeps its stop-loss and take-profit.
    bnb_exits = [o for o in market.open_orders()["algo_orders"] if o["symbol"] == "BNBUSDT"]
    assert sorted(o["orderType"] for o in bnb_exits) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert TradingSwitch.load().enabled is False


def test_emergency_close_when_not_confirmed_then_aborted_and_nothing_done(
    market, two_positions: list[Position]
) -> None:
    out = StringIO()

    with pytest.raises(CommandError, match="Aborted"):
        call_command("emergency_close", stdin=StringIO("no\n"), stdout=out)

    assert "cancel 4 open order(s)" in out.getvalue()
    assert "BTCUSDT LONG" in out.getvalue()
    assert TradingSwitch.load().enabled is True
    assert len(market.positions()) == 2
    assert exchange_order_count(market) == 4


def test_emergency_close_when_no_input_then_aborted_and_nothing_done(
    market, two_positions: list[Position]
) -> None:
    with pytest.raises(CommandError, match="Aborted"):
        call_command("emergency_close", stdin=StringIO(""), stdout=StringIO(), stderr=StringIO())

    assert TradingSwitch.load().enabled is True
    assert len(market.positions()) == 2


def test_emergency_close_when_confirmed_with_yes_typed_then_flat(
    market, two_positions: list[Position]
) -> None:
    call_command("emergency_close", stdin=StringIO("yes\n"), stdout=StringIO())

    assert market.positions() == []


def test_emergency_close_when_symbol_given_then_only_that_symbol_closed(
    market, two_positions: list[Position]
) -> None:
    out = StringIO()

    call_command("emergency_close", "--yes", "--symbol", "btcusdt", stdout=out)

    assert exchange_quantity(market, "BTCUSDT") == 0
    assert exchange_quantity(market, "BNBUSDT") != 0
    assert "BNBUSDT" not in out.getvalue().split("Trading halted")[1]
    assert TradingSwitch.load().enabled is False


def test_emergency_close_when_symbol_unknown_then_error_and_nothing_done(
    market, two_positions: list[Position]
) -> None:
    with pytest.raises(CommandError, match=r"Unknown symbol.*FOOUSDT"):
        call_command("emergency_close", "--yes", "--symbol", "FOOUSDT", stdout=StringIO())

    assert TradingSwitch.load().enabled is True
    assert len(market.positions()) == 2


def test_emergency_close_when_nothing_open_then_reports_flat(market, transactional_db) -> None:
    out = StringIO()

    call_command("emergency_close", "--yes", stdout=out)

    assert "Nothing was open." in out.getvalue()
    assert TradingSwitch.load().enabled is False


def test_emergency_close_when_position_opened_by_hand_then_closed_through_a_stored_intent(
    transactional_db: None, market
) -> None:
    from decimal import Decimal

    from trading.exchange import exchange_gateway
    from trading.models import Order

    exchange_gateway().create_market_order(
        symbol="BTCUSDT",
        side="BUY",
        quantity=Decimal("0.002"),
        client_order_id="opened-by-hand-1",
        reduce_only=False,
    )

    call_command("emergency_close", "--yes", "--reason", "drill", stdout=StringIO())

    assert exchange_quantity(market, "BTCUSDT") == 0
    close = Order.objects.get(purpose=Order.Purpose.CLOSE, symbol__name="BTCUSDT")
    assert close.client_order_id.startswith("arena-")
    assert (close.reduce_only, close.quantity, close.status) == (
        True,
        Decimal("0.002"),
        Order.Status.FILLED,
    )
