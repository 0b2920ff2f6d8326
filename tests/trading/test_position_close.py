"""Closing positions against the paper exchange: full, partial, skipped, exchange-side."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.gateway import ExchangeGateway
from risk.models import RiskProfile
from tests.support.exchange import exchange_exits, exchange_quantity
from trading.models import Order, Position, Symbol, TradeEvent
from trading.services import (
    CloseOutcome,
    position_close,
    position_open,
    position_record_exchange_close,
    position_replace_stop,
)

pytestmark = pytest.mark.django_db(transaction=True)


def close_requests(paper: object) -> int:
    return paper.stats()["requests"].get("POST /fapi/v1/order", 0)


@pytest.fixture
def long_btc(scenario_market: object, btc: Symbol, recording_gateway: ExchangeGateway) -> Position:
    return position_open(symbol=btc, side="LONG", reason="test", gateway=recording_gateway).position


@pytest.fixture
def short_bnb(scenario_market: object, bnb: Symbol, recording_gateway: ExchangeGateway) -> Position:
    return position_open(
        symbol=bnb, side="SHORT", reason="test", gateway=recording_gateway
    ).position


def test_close_when_partial_0_0006_bnb_then_skipped_without_request_and_exits_stay(
    scenario_market: object, short_bnb: Position, recording_gateway: ExchangeGateway
) -> None:
    requests_before = sum(scenario_market.stats()["requests"].values())

    outcome = position_close(
        position=short_bnb, quantity=Decimal("0.0006"), reason="RISK", gateway=recording_gateway
    )

    assert outcome.status == CloseOutcome.SKIPPED
    assert "below minQty 0.01" in outcome.reason
    assert sum(scenario_market.stats()["requests"].values()) == requests_before
    assert exchange_quantity(scenario_market, "BNBUSDT") == Decimal("-1.14")
    assert exchange_exits(scenario_market, "BNBUSDT") == {
        "TAKE_PROFIT_MARKET": Decimal("959.18"),
        "STOP_MARKET": Decimal("966.89"),
    }
    short_bnb.refresh_from_db()
    assert short_bnb.skip_reason == outcome.reason


def test_close_when_same_skip_twice_then_reason_recorded_once(
    scenario_market: object, short_bnb: Position, recording_gateway: ExchangeGateway
) -> None:
    for _ in range(2):
        position_close(
            position=short_bnb, quantity=Decimal("0.0006"), reason="RISK", gateway=recording_gateway
        )

    assert TradeEvent.objects.filter(kind="SKIPPED").count() == 1


def test_close_when_full_manual_then_flat_exits_removed_and_pnl_from_fills(
    scenario_market: object,
    long_btc: Position,
    recording_gateway: ExchangeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="trading.services")
    scenario_market.set_price("BTCUSDT", "100100")

    outcome = position_close(position=long_btc, reason="MANUAL", gateway=recording_gateway)

    assert outcome.status == CloseOutcome.CLOSED
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0
    assert exchange_exits(scenario_market, "BTCUSDT") == {}
    long_btc.refresh_from_db()
    # 0.011 x 100 = 1.10 gross; taker fees 0.05 % of 1100 and of 1101.1 = 1.10 together.
    assert long_btc.fees == Decimal("1.10055")
    assert long_btc.realized_pnl == Decimal("1.1") - Decimal("1.10055")
    assert (long_btc.status, long_btc.exit_price) == ("CLOSED", Decimal("100100"))
    assert "[Close] BTCUSDT MANUAL @ 100100.0 | PnL 0.00 USDT" in caplog.text


def test_close_when_partial_then_remaining_keeps_its_exits(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    outcome = position_close(
        position=long_btc, quantity=Decimal("0.0049"), reason="RISK", gateway=recording_gateway
    )

    assert (outcome.status, outcome.quantity) == (CloseOutcome.PARTIAL, Decimal("0.004"))
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.007")
    assert len(exchange_exits(scenario_market, "BTCUSDT")) == 2
    long_btc.refresh_from_db()
    assert (long_btc.status, long_btc.quantity) == ("OPEN", Decimal("0.007"))


def test_close_when_signal_inside_min_holding_then_refused_and_nothing_sent(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    RiskProfile.objects.update(min_holding_seconds=3600)
    before = close_requests(scenario_market)

    outcome = position_close(position=long_btc, reason="SIGNAL", gateway=recording_gateway)

    assert outcome.status == CloseOutcome.REFUSED
    assert "minimum 3600s" in outcome.reason
    assert close_requests(scenario_market) == before
    assert exchange_quantity(scenario_market, "BTCUSDT") == Decimal("0.011")


def test_close_when_stop_loss_hit_inside_min_holding_then_position_closed(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    RiskProfile.objects.update(min_holding_seconds=3600)

    scenario_market.set_price("BTCUSDT", "99600")  # through the stop at 99700
    recorded = position_record_exchange_close(position=long_btc, gateway=recording_gateway)

    assert exchange_quantity(scenario_market, "BTCUSDT") == 0
    assert exchange_exits(scenario_market, "BTCUSDT") == {}
    assert recorded.status == CloseOutcome.CLOSED
    long_btc.refresh_from_db()
    assert (long_btc.status, long_btc.close_reason) == ("CLOSED", "SL")
    assert long_btc.realized_pnl < 0


def test_close_when_forced_inside_min_holding_then_closes(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    RiskProfile.objects.update(min_holding_seconds=3600)

    outcome = position_close(
        position=long_btc, reason="EMERGENCY", forced_event=True, gateway=recording_gateway
    )

    assert outcome.status == CloseOutcome.CLOSED
    assert exchange_quantity(scenario_market, "BTCUSDT") == 0


def test_record_exchange_close_when_still_open_on_exchange_then_refused(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    outcome = position_record_exchange_close(position=long_btc, gateway=recording_gateway)

    assert outcome.status == CloseOutcome.REFUSED
    long_btc.refresh_from_db()
    assert long_btc.status == "OPEN"


def test_close_when_exchange_already_flat_then_records_the_exchange_close(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    scenario_market.set_price("BTCUSDT", "100600")  # through the take-profit at 100500
    before = close_requests(scenario_market)

    outcome = position_close(position=long_btc, reason="SIGNAL", gateway=recording_gateway)

    assert outcome.status == CloseOutcome.CLOSED
    assert close_requests(scenario_market) == before
    long_btc.refresh_from_db()
    assert long_btc.close_reason == "TP"


def test_replace_stop_when_moved_then_new_stop_on_exchange_and_old_cancelled(
    scenario_market: object, long_btc: Position, recording_gateway: ExchangeGateway
) -> None:
    new = position_replace_stop(
        position=long_btc, stop_price=Decimal("99800"), gateway=recording_gateway
    )

    assert exchange_exits(scenario_market, "BTCUSDT")["STOP_MARKET"] == Decimal("99800")
    assert len(scenario_market.open_orders()["algo_orders"]) == 2
    old = Order.objects.filter(purpose="SL").exclude(pk=new.pk).get()
    assert old.status == "CANCELED"
