"""The entry path's round trips: what the entry needs is held, and read again only when stale.

Requests are taken from the request log (one ``ExchangeRequest`` row per request, written when
its answer arrives) and from the paper exchange's own counts; the exchange's settings and
positions are asserted on the exchange.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.gateway import ExchangeGateway
from risk.models import RiskProfile
from risk.services import rule_save
from risk.sizing import position_size
from signals.cycles import trade_cycle_run
from signals.types import Decision
from tests.support.exchange import exchange_exits, exchange_quantity
from trading.entry_state import (
    BALANCE_MAX_AGE,
    HeldSymbolState,
    balance_held,
    balance_read,
    symbol_state_read,
)
from trading.models import AccountBalanceHeld, ExchangeRequest, Order, Position, Symbol
from trading.services import OpenOutcome, position_close, position_open

pytestmark = pytest.mark.django_db(transaction=True)


def requests_after(mark: int) -> list[ExchangeRequest]:
    return list(ExchangeRequest.objects.filter(id__gt=mark).order_by("id"))


def last_request_id() -> int:
    return ExchangeRequest.objects.order_by("-id").values_list("id", flat=True).first() or 0


def started(request: ExchangeRequest):
    return request.created_at - timedelta(milliseconds=request.latency_ms)


def held_inputs(
    symbol: Symbol, gateway: ExchangeGateway, *, settings: tuple[int, str] = (2, "ISOLATED")
) -> HeldSymbolState:
    """What a cycle holds when its agent has decided: the exchange at the rules' ``settings``
    (an earlier entry set them), the account mode checked, the balance read (by the previous
    entry's post-trade check), the symbol's state read meanwhile."""
    leverage, margin_type = settings
    gateway.ensure_symbol_settings(symbol=symbol.name, leverage=leverage, margin_type=margin_type)
    gateway.check_account_mode(max_age_seconds=0)
    balance_read(gateway=gateway)
    return symbol_state_read(symbol=symbol, gateway=gateway)


def test_open_when_inputs_held_then_entry_is_first_request_and_exits_the_second_round_trip(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # Arrange: the exits answer slowly, so sending them one after the other would show.
    held = held_inputs(btc, recording_gateway)
    scenario_market.faults(
        kind="latency", method="POST", path="/fapi/v1/algoOrder", seconds=0.4, count=2
    )
    mark = last_request_id()

    # Act: the decision is taken; everything from here on is the entry path.
    outcome = position_open(
        symbol=btc, side="LONG", reason="test", gateway=recording_gateway, held=held
    )

    # Assert
    assert outcome.status == OpenOutcome.OPENED
    sent = requests_after(mark)
    actions = [r.action for r in sent]
    assert actions == [
        "create_market_order",
        "create_exit_order",
        "create_exit_order",
        "fetch_balance",  # the post-trade check, after protection
    ]
    entry, first_exit, second_exit = sent[:3]
    # Both exits went out after the entry's answer and were in flight together.
    assert started(first_exit) >= entry.created_at - timedelta(milliseconds=5)
    assert started(second_exit) < first_exit.created_at
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")
    assert len(exchange_exits(scenario_market, "BTCUSDT")) == 2


def test_cycle_when_no_position_then_state_read_while_deciding_and_entry_next(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.check_account_mode(max_age_seconds=0)
    recording_gateway.ensure_symbol_settings(symbol="BTCUSDT", leverage=2, margin_type="ISOLATED")
    balance_read(gateway=recording_gateway)
    mark = last_request_id()

    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="test"), gateway=recording_gateway
    )

    assert outcome.status == OpenOutcome.OPENED
    actions = [r.action for r in requests_after(mark)]
    assert actions == [
        "fetch_symbol_state",  # read while the agent decides
        "create_market_order",
        "create_exit_order",
        "create_exit_order",
        "fetch_balance",
    ]


def test_cycle_when_balance_stale_then_read_while_deciding_and_entry_next(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.check_account_mode(max_age_seconds=0)
    recording_gateway.ensure_symbol_settings(symbol="BTCUSDT", leverage=2, margin_type="ISOLATED")
    AccountBalanceHeld.objects.all().delete()
    mark = last_request_id()

    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="test"), gateway=recording_gateway
    )

    assert outcome.status == OpenOutcome.OPENED
    actions = [r.action for r in requests_after(mark)]
    assert sorted(actions[:2]) == ["fetch_balance", "fetch_symbol_state"]
    assert actions[2:] == [
        "create_market_order",
        "create_exit_order",
        "create_exit_order",
        "fetch_balance",
    ]


def test_cycle_when_position_open_then_no_state_read_ahead(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position_open(symbol=btc, side="LONG", reason="first", gateway=recording_gateway)
    mark = last_request_id()

    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="HOLD", reason="test"), gateway=recording_gateway
    )

    assert outcome.status == "held"
    assert requests_after(mark) == []


def test_open_when_nothing_held_then_inputs_read_in_one_concurrent_round_trip(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.check_account_mode(max_age_seconds=0)
    AccountBalanceHeld.objects.all().delete()
    # Each read answers after 0.4 s: read one after the other they would not overlap.
    scenario_market.faults(
        kind="latency", method="GET", path="/fapi/v2/account", seconds=0.4, count=1
    )
    scenario_market.faults(
        kind="latency", method="GET", path="/fapi/v2/positionRisk", seconds=0.4, count=1
    )
    mark = last_request_id()

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.ok
    sent = requests_after(mark)
    reads = sent[:2]
    assert sorted(r.action for r in reads) == ["fetch_balance", "fetch_symbol_state"]
    assert started(reads[1]) < reads[0].created_at  # in flight together
    assert sent[2].action in ("set_margin_type", "set_leverage", "create_market_order")


def test_open_when_leverage_changed_in_admin_after_state_read_then_set_before_entry(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # Arrange: the exchange at the rules' 2x when the state is read; then the rule changes.
    held = held_inputs(btc, recording_gateway)
    assert held.state.leverage == 2
    profile = RiskProfile.objects.get(is_active=True)
    profile.leverage = 3
    rule_save(instance=profile, actor="admin")
    mark = last_request_id()

    # Act
    outcome = position_open(
        symbol=btc, side="LONG", reason="test", gateway=recording_gateway, held=held
    )

    # Assert: 3x written before the entry, on the exchange and in the record.
    assert outcome.ok
    actions = [r.action for r in requests_after(mark)]
    assert actions[:2] == ["set_leverage", "create_market_order"]
    (live,) = scenario_market.positions()
    assert int(live["leverage"]) == 3
    assert outcome.position.quantity == Decimal("0.016")


def test_open_when_margin_type_changed_by_hand_before_cycle_then_set_back_before_entry(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.ensure_symbol_settings(symbol="BTCUSDT", leverage=2, margin_type="ISOLATED")
    balance_read(gateway=recording_gateway)
    recording_gateway.client.fapiPrivatePostMarginType(
        {"symbol": "BTCUSDT", "marginType": "CROSSED"}
    )
    mark = last_request_id()

    outcome = trade_cycle_run(
        symbol_id=btc.pk, signal=Decision(action="LONG", reason="test"), gateway=recording_gateway
    )

    assert outcome.status == OpenOutcome.OPENED
    actions = [r.action for r in requests_after(mark)]
    assert actions[:3] == ["fetch_symbol_state", "set_margin_type", "create_market_order"]
    (live,) = scenario_market.positions()
    assert live["marginType"] == "isolated"


def test_open_when_margin_type_set_by_hand_after_state_read_then_4046_taken_as_done(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # The state says CROSSED; by the time the entry sets ISOLATED, the exchange already is.
    held = held_inputs(btc, recording_gateway, settings=(2, "CROSSED"))
    recording_gateway.client.fapiPrivatePostMarginType(
        {"symbol": "BTCUSDT", "marginType": "ISOLATED"}
    )

    outcome = position_open(
        symbol=btc, side="LONG", reason="test", gateway=recording_gateway, held=held
    )

    assert outcome.ok
    assert scenario_market.stats()["rejections"].get("-4046") == 1
    (live,) = scenario_market.positions()
    assert live["marginType"] == "isolated"


def test_open_when_margin_type_differs_and_orders_open_then_refused_with_4047(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # A leftover order of the symbol keeps Binance from changing its margin type (-4047).
    held = held_inputs(btc, recording_gateway, settings=(2, "CROSSED"))
    recording_gateway.client.fapiPrivatePostOrder(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "98000",
            "newClientOrderId": "by-hand-1",
        }
    )

    outcome = position_open(
        symbol=btc, side="LONG", reason="test", gateway=recording_gateway, held=held
    )

    assert outcome.status == OpenOutcome.REFUSED
    assert "could not set leverage/margin" in outcome.reason
    assert scenario_market.stats()["rejections"].get("-4047") == 1
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0
    assert scenario_market.stats()["requests"].get("POST /fapi/v1/order", 0) == 1  # the hand's own


def test_open_when_state_read_too_long_ago_then_read_again(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    held = held_inputs(btc, recording_gateway)
    # The price moves after the read; a state older than its bound is not trusted.
    scenario_market.set_price("BTCUSDT", "50000")
    old = HeldSymbolState(held.state, held.sent_at - 60)
    mark = last_request_id()

    outcome = position_open(
        symbol=btc, side="LONG", reason="test", gateway=recording_gateway, held=old
    )

    assert outcome.ok
    assert requests_after(mark)[0].action == "fetch_symbol_state"
    assert outcome.position.quantity == Decimal("0.022")  # sized at 50000, not 100000


def test_open_when_balance_older_than_bound_then_read_again_and_sized_from_it(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # Arrange: a balance held from a read 301 s ago; since then the wallet halved by hand.
    held = held_inputs(btc, recording_gateway)
    AccountBalanceHeld.objects.update(taken_at=timezone.now() - BALANCE_MAX_AGE - timedelta(1))
    scenario_market.set_balance("USDT", "900")
    mark = last_request_id()

    # Act
    outcome = position_open(
        symbol=btc, side="LONG", reason="test", gateway=recording_gateway, held=held
    )

    # Assert: read before the entry, and the entry sized from the balance read.
    assert outcome.ok
    actions = [r.action for r in requests_after(mark)]
    assert actions.index("fetch_balance") < actions.index("create_market_order")
    profile = RiskProfile.objects.get(is_active=True)
    expected = position_size(
        equity=Decimal("900"),
        price=Decimal("100000"),
        leverage=profile.leverage,
        risk_pct=profile.risk_pct,
        max_risk_usd=profile.max_risk_usd,
        filters=btc.filters,
        slippage_pct=profile.entry_slippage_pct,
    )
    assert outcome.position.quantity == expected.quantity == Decimal("0.005")


def test_balance_held_when_book_moved_since_read_then_stale(
    scenario_market: object, btc: Symbol, bnb: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position_open(symbol=bnb, side="SHORT", reason="test", gateway=recording_gateway)
    assert balance_held()[0] is not None  # read after the exits: nothing moved since
    position = Position.objects.get()

    position_close(position=position, reason="MANUAL", forced_event=True, gateway=recording_gateway)

    balance, why = balance_held()
    assert balance is None
    assert "book moved" in why


def test_balance_held_when_position_open_then_never_above_equity_at_its_stop(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # Arrange: a long open (stop 99700), its balance read and held.
    position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)
    assert Order.objects.filter(purpose=Order.Purpose.STOP_LOSS, status="OPEN").exists()

    # Act: the price falls to one tick above the stop; the exchange's equity falls with it.
    scenario_market.set_price("BTCUSDT", "99700.1")
    held, _ = balance_held()
    real = recording_gateway.fetch_balance()

    # Assert: what an entry would size with stays at or below the equity of now.
    assert held is not None
    assert held.equity <= real.equity
    assert held.available <= real.available


def test_open_when_entry_answer_lost_with_inputs_held_then_looked_up_not_resent(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.client.timeout = (
        300  # ms; the exchange accepts the entry, then holds the answer
    )
    held = held_inputs(btc, recording_gateway)
    scenario_market.faults(kind="timeout", seconds=1.5, method="POST", path="/fapi/v1/order")
    mark = last_request_id()

    outcome = position_open(
        symbol=btc, side="LONG", reason="test", gateway=recording_gateway, held=held
    )

    assert outcome.ok
    assert scenario_market.stats()["requests"]["POST /fapi/v1/order"] == 1
    actions = [r.action for r in requests_after(mark)]
    # The lost answer is looked up by its client id before anything else is sent.
    assert actions[:2] == ["create_market_order", "fetch_order"]
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")
    assert Position.objects.get().status == "OPEN"
    assert len(exchange_exits(scenario_market, "BTCUSDT")) == 2
