"""Opening positions against the paper exchange over HTTP (ccxt unmodified)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from risk.models import RiskProfile
from risk.services import rule_save
from tests.support.exchange import exchange_exits, exchange_quantity
from trading.gateway import exchange_gateway
from trading.models import ExchangeRequest, Order, Position, Symbol, TradeEvent, TradingSwitch
from trading.services import OpenOutcome, position_entry_resolve, position_open

pytestmark = pytest.mark.django_db(transaction=True)


def order_requests(paper: object) -> int:
    requests = paper.stats()["requests"]
    return requests.get("POST /fapi/v1/order", 0) + requests.get("POST /fapi/v1/algoOrder", 0)


def test_open_when_long_btc_at_100000_then_0_011_with_tp_100500_and_sl_99700(
    scenario_market: object,
    btc: Symbol,
    recording_gateway: ExchangeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="trading.services")

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.status == OpenOutcome.OPENED
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exits(scenario_market, "BTCUSDT") == {
        "TAKE_PROFIT_MARKET": Decimal("100500"),
        "STOP_MARKET": Decimal("99700"),
    }
    assert scenario_market.stats()["rejections"] == {}
    assert "[Entry] LONG BTCUSDT qty 0.011 @ 100000.0 | TP 100500.0 SL 99700.0" in caplog.text
    position = Position.objects.get()
    assert (position.status, position.quantity, position.leverage) == ("OPEN", Decimal("0.011"), 2)


def test_open_when_short_bnb_at_964_then_1_14_with_its_tp_and_sl(
    scenario_market: object, bnb: Symbol, recording_gateway: ExchangeGateway
) -> None:
    outcome = position_open(symbol=bnb, side="SHORT", reason="test", gateway=recording_gateway)

    assert outcome.ok
    assert exchange_quantity(scenario_market, "BNBUSDT") == Decimal("-1.14")
    # TP 0.5 % below and SL 0.3 % above 964, each rounded toward the entry on the 0.01 tick.
    assert exchange_exits(scenario_market, "BNBUSDT") == {
        "TAKE_PROFIT_MARKET": Decimal("959.18"),
        "STOP_MARKET": Decimal("966.89"),
    }
    assert scenario_market.stats()["rejections"] == {}


def test_open_when_both_scenario_trades_then_no_request_rejected(
    scenario_market: object, btc: Symbol, bnb: Symbol, recording_gateway: ExchangeGateway
) -> None:
    long = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)
    short = position_open(symbol=bnb, side="SHORT", reason="test", gateway=recording_gateway)

    assert (long.ok, short.ok) == (True, True)
    assert scenario_market.stats()["rejections"] == {}
    assert not ExchangeRequest.objects.filter(ok=False).exists()


def test_open_when_long_already_open_then_second_refused_and_exchange_stays_0_011(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    position_open(symbol=btc, side="LONG", reason="first", gateway=recording_gateway)
    orders_before = order_requests(scenario_market)

    second = position_open(symbol=btc, side="LONG", reason="second", gateway=recording_gateway)

    assert second.status == OpenOutcome.REFUSED
    assert "already open" in second.reason
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")
    assert order_requests(scenario_market) == orders_before
    assert TradeEvent.objects.filter(kind="REFUSED", message=second.reason).count() == 1


def test_open_when_exchange_has_unrecorded_position_then_refused(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.create_market_order(
        symbol="BTCUSDT",
        side="BUY",
        quantity=Decimal("0.002"),
        client_order_id="manual-1",
        reduce_only=False,
    )

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.status == OpenOutcome.REFUSED
    assert "exchange already has a position" in outcome.reason
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.002")


def test_open_when_kill_switch_off_then_refused_before_any_request(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    TradingSwitch.objects.filter(id=1).update(enabled=False, reason="maintenance")

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.status == OpenOutcome.REFUSED
    assert "maintenance" in outcome.reason
    assert recording_gateway.request_count == 0


def test_open_when_max_open_positions_reached_then_refused(
    scenario_market: object, btc: Symbol, bnb: Symbol, recording_gateway: ExchangeGateway
) -> None:
    RiskProfile.objects.update(max_open_positions=1)
    position_open(symbol=bnb, side="SHORT", reason="test", gateway=recording_gateway)

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.status == OpenOutcome.REFUSED
    assert "most allowed is 1" in outcome.reason
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0


def test_open_when_equity_too_small_then_refused_with_min_notional_reason(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    scenario_market.set_balance("USDT", "5")

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.status == OpenOutcome.REFUSED
    assert "below minQty 0.001" in outcome.reason
    assert order_requests(scenario_market) == 0


@pytest.mark.parametrize("leverage", [2, 3])
def test_open_when_profile_leverage_set_then_exchange_and_record_use_it(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway, leverage: int
) -> None:
    profile = RiskProfile.objects.get(is_active=True)
    profile.leverage = leverage
    rule_save(instance=profile, actor="test")

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.position.leverage == leverage
    (live,) = scenario_market.positions()
    assert int(live["leverage"]) == leverage
    # The leverage was written before the entry was sent.
    actions = list(ExchangeRequest.objects.order_by("id").values_list("action", flat=True))
    assert actions.index("set_leverage") < actions.index("create_market_order")
    # Margin = equity x 30 %; a higher leverage buys more: 550.002 x 3 / 100000 -> 0.016.
    assert outcome.position.quantity == {2: Decimal("0.011"), 3: Decimal("0.016")}[leverage]


def test_open_when_leverage_already_matches_then_no_leverage_request(
    scenario_market: object, btc: Symbol, bnb: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.ensure_symbol_settings(symbol="BTCUSDT", leverage=2, margin_type="ISOLATED")
    before = scenario_market.stats()["requests"].get("POST /fapi/v1/leverage", 0)

    position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert scenario_market.stats()["requests"].get("POST /fapi/v1/leverage", 0) == before


def test_open_when_entry_answer_times_out_after_acceptance_then_exactly_one_position(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    recording_gateway.client.timeout = (
        300  # ms; the exchange accepts the entry, then holds the answer
    )
    scenario_market.faults(kind="timeout", seconds=1.5, method="POST", path="/fapi/v1/order")

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.ok
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")
    assert scenario_market.stats()["requests"]["POST /fapi/v1/order"] == 1
    assert Position.objects.filter(status="OPEN").count() == 1
    entry = Order.objects.get(purpose="ENTRY")
    assert (entry.status, entry.filled_quantity) == ("FILLED", Decimal("0.011"))
    assert len(exchange_exits(scenario_market, "BTCUSDT")) == 2


def test_open_when_stop_loss_would_trigger_then_position_closed_at_once_as_sl(
    scenario_market: object,
    btc: Symbol,
    recording_gateway: ExchangeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Both conditional orders are refused; the position must not stay open without its stop.
    scenario_market.faults(
        kind="error",
        status=400,
        code=-2021,
        msg="Order would immediately trigger.",
        method="POST",
        path="/fapi/v1/algoOrder",
        count=2,
    )

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.status == OpenOutcome.FAILED
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0
    position = Position.objects.get()
    assert (position.status, position.close_reason) == ("CLOSED", "SL")
    assert any(r.levelname == "ERROR" and "[NoStop]" in r.message for r in caplog.records)


def test_open_when_price_crosses_stop_before_it_is_placed_then_closed_as_sl_from_its_fills(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # The exits reach the exchange slowly; meanwhile the price falls through the stop (99700),
    # so the exchange itself refuses the stop with -2021 and the order path sells at market.
    scenario_market.faults(
        kind="latency", method="POST", path="/fapi/v1/algoOrder", seconds=3, count=2
    )

    def crash_once_exits_arrive() -> None:
        deadline = time.monotonic() + 20
        while scenario_market.stats()["requests"].get("POST /fapi/v1/algoOrder", 0) < 2:
            assert time.monotonic() < deadline, "the exits never reached the exchange"
            time.sleep(0.02)
        scenario_market.set_price("BTCUSDT", "99600")

    crash = threading.Thread(target=crash_once_exits_arrive)
    crash.start()
    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)
    crash.join()

    assert outcome.status == OpenOutcome.FAILED
    assert scenario_market.stats()["rejections"].get("-2021") == 1
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0
    assert exchange_exits(scenario_market, "BTCUSDT") == {}
    position = Position.objects.get()
    assert (position.status, position.close_reason) == ("CLOSED", "SL")
    # From the position's own fills: bought 0.011 @ 100000, sold @ 99600 (gross -4.40);
    # taker fees 0.05 % of 1100 and of 1095.6.
    assert position.exit_price == Decimal("99600")
    assert position.fees == Decimal("0.55") + Decimal("0.5478")
    assert position.realized_pnl == Decimal("-4.4") - Decimal("1.0978")


def test_resolve_when_entry_answer_lost_past_retry_budget_then_fill_found_and_protected(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    # Arrange: an impatient gateway gives up on the lost entry answer and its lookups.
    impatient = exchange_gateway(
        retry_policy=RetryPolicy(max_total_seconds=0.01, sleep=lambda _: None)
    )
    impatient.client.timeout = 300
    scenario_market.faults(kind="timeout", seconds=1.5, method="POST", path="/fapi/v1/order")
    scenario_market.faults(kind="error", status=503, method="GET", path="/fapi/v1/order", count=100)
    lost = position_open(symbol=btc, side="LONG", reason="test", gateway=impatient)
    scenario_market.clear_faults()

    # Act
    resolved = position_entry_resolve(position=lost.position, gateway=recording_gateway)

    # Assert
    assert (lost.status, resolved.status) == (OpenOutcome.FAILED, OpenOutcome.OPENED)
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")
    assert len(exchange_exits(scenario_market, "BTCUSDT")) == 2
    assert scenario_market.stats()["orders_accepted"] == 3
    position = Position.objects.get()
    assert (position.status, position.entry_price) == ("OPEN", Decimal("100000"))


def test_resolve_when_entry_never_reached_exchange_then_position_failed(
    scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway
) -> None:
    impatient = exchange_gateway(
        retry_policy=RetryPolicy(max_total_seconds=0.01, sleep=lambda _: None)
    )
    scenario_market.faults(
        kind="error", status=503, method="POST", path="/fapi/v1/order", count=100
    )
    scenario_market.faults(kind="error", status=503, method="GET", path="/fapi/v1/order", count=100)
    lost = position_open(symbol=btc, side="LONG", reason="test", gateway=impatient)
    scenario_market.clear_faults()

    resolved = position_entry_resolve(position=lost.position, gateway=recording_gateway)

    assert resolved.status == OpenOutcome.FAILED
    assert Position.objects.get().status == "FAILED"
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0


def test_open_when_daily_loss_limit_reached_then_refused_and_trading_halted(
    scenario_market: object, btc: Symbol, bnb: Symbol, recording_gateway: ExchangeGateway
) -> None:
    RiskProfile.objects.update(daily_loss_limit_usd=Decimal("100"))
    Position.objects.create(
        symbol=bnb,
        side="LONG",
        status="CLOSED",
        leverage=2,
        margin_type="ISOLATED",
        realized_pnl=Decimal("-100"),
        closed_at=timezone.now(),
    )

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway)

    assert outcome.status == OpenOutcome.REFUSED
    assert "reached the daily limit 100" in outcome.reason
    switch = TradingSwitch.objects.get()
    assert (switch.enabled, switch.changed_by) == (False, "risk")
    assert order_requests(scenario_market) == 0
