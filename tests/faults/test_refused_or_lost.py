"""A request refused before the exchange acted is not an answer lost, and neither is a dead end.

Against the paper exchange over HTTP: 503 bursts past the retry budget, a 429 with Retry-After,
-1021 twice. Each case ends judged on the exchange: the position there is protected (or nothing
is there), the database says what the exchange holds, and the symbol trades at the next cycle.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from exchange.gateway import ExchangeGateway
from signals.cycles import trade_cycle_run
from signals.types import Decision
from tests.support.exchange import PROTECTED, accepted, exchange_exit_types, exchange_quantity
from trading.models import Order, Position, Symbol, TradeEvent
from trading.services import CloseOutcome, OpenOutcome, position_open

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"


def let_entry_through(paper: Any) -> None:
    """The next POST /order (the entry) is handled normally; faults added after it apply to
    the requests that follow (the paper exchange takes the first matching fault)."""
    paper.faults(kind="latency", method="POST", path=ORDER, seconds=0, count=1)


def exits_fail(paper: Any) -> None:
    """Every stop-loss and take-profit request, and every lookup of one, answers 503."""
    paper.faults(kind="error", method="POST", path=ALGO, count=1000, status=503)
    paper.faults(kind="error", method="GET", path=ALGO, count=1000, status=503)


def cycle(symbol: Symbol, gateway: ExchangeGateway, action: str = "LONG"):
    return trade_cycle_run(
        symbol_id=symbol.pk, signal=Decision(action=action, reason="t"), gateway=gateway
    )


def left_for_the_guard(paper: Any, symbol: str) -> None:
    """The state the guard acts on: OPEN here, the position on the exchange, an alert raised.
    (Re-attaching the exits is the guard's job, tested with the guard.)"""
    from monitoring.models import Alert

    position = Position.objects.get(symbol__name=symbol, status__in=Position.OPEN_STATUSES)
    assert position.status == Position.Status.OPEN
    assert exchange_quantity(paper, symbol) == position.quantity
    assert Alert.objects.filter(key=f"order_path.no_stop_close_failed.{symbol}").exists()


# --- case 1: exits fail, then the close fails --------------------------------------------------
def test_cycle_when_exits_fail_and_close_rate_limited_then_open_reported_for_the_guard(
    btc_market: Any, btc: Symbol, impatient_gateway: ExchangeGateway
) -> None:
    let_entry_through(btc_market)
    btc_market.faults(kind="rate_limit", method="POST", path=ORDER, count=10, retry_after=1)
    exits_fail(btc_market)

    outcome = cycle(btc, impatient_gateway)

    position = Position.objects.get()
    assert outcome.status == OpenOutcome.FAILED, outcome
    assert "closed" not in outcome.reason.replace("close did not", ""), outcome
    assert "close did not execute" in outcome.reason, outcome
    assert "refused before the exchange acted" in outcome.reason, outcome
    # The 429 means the exchange did not act: the position is OPEN, as on the exchange.
    assert position.status == Position.Status.OPEN
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    close = Order.objects.get(purpose=Order.Purpose.CLOSE)
    assert close.status == Order.Status.REJECTED
    assert TradeEvent.objects.filter(position=position, message__startswith="CLOSING -> OPEN")
    left_for_the_guard(btc_market, "BTCUSDT")
    assert accepted(btc_market) == 1  # the entry only: no close, no exit was accepted


def test_cycle_when_exits_fail_and_close_lost_but_never_arrived_then_open_for_the_guard(
    btc_market: Any, btc: Symbol, impatient_gateway: ExchangeGateway
) -> None:
    let_entry_through(btc_market)
    # Every close attempt answers 503 without being handled; lookups by id still answer.
    btc_market.faults(kind="error", method="POST", path=ORDER, count=1000, status=503)
    exits_fail(btc_market)

    outcome = cycle(btc, impatient_gateway)

    position = Position.objects.get()
    assert outcome.status == OpenOutcome.FAILED, outcome
    assert "close did not execute" in outcome.reason, outcome
    assert "never reached the exchange" in outcome.reason, outcome
    assert position.status == Position.Status.OPEN
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    left_for_the_guard(btc_market, "BTCUSDT")


def test_cycle_when_exits_fail_and_close_outcome_unknown_then_closing_is_reported_loudly(
    btc_market: Any, btc: Symbol, impatient_gateway: ExchangeGateway
) -> None:
    let_entry_through(btc_market)
    btc_market.faults(kind="error", method="POST", path=ORDER, count=1000, status=503)
    btc_market.faults(kind="error", method="GET", path=ORDER, count=1000, status=503)
    exits_fail(btc_market)

    outcome = cycle(btc, impatient_gateway)

    position = Position.objects.get()
    assert outcome.status == OpenOutcome.FAILED, outcome
    assert "outcome is unknown" in outcome.reason, outcome
    assert "closed at market" not in outcome.reason, outcome
    assert position.status == Position.Status.CLOSING
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    from monitoring.models import Alert

    assert Alert.objects.filter(key="order_path.close_unknown.BTCUSDT").exists()


def test_cycle_when_exits_fail_and_close_fills_then_reported_closed_and_flat(
    btc_market: Any, btc: Symbol, impatient_gateway: ExchangeGateway
) -> None:
    exits_fail(btc_market)

    outcome = cycle(btc, impatient_gateway)

    assert outcome.status == OpenOutcome.FAILED, outcome
    assert outcome.reason == "no stop-loss could be placed: closed at market", outcome
    assert exchange_quantity(btc_market, "BTCUSDT") == 0
    assert Position.objects.get().status == Position.Status.CLOSED


def test_close_when_rate_limited_then_refused_not_lost_and_exits_kept(
    btc_market: Any,
    btc: Symbol,
    patient_gateway: ExchangeGateway,
    impatient_gateway: ExchangeGateway,
) -> None:
    from trading.services import position_close

    position = position_open(symbol=btc, side="LONG", reason="t", gateway=patient_gateway).position
    btc_market.faults(kind="rate_limit", method="POST", path=ORDER, count=10, retry_after=5)

    outcome = position_close(
        position=position, reason="MANUAL", forced_event=True, gateway=impatient_gateway
    )

    position.refresh_from_db()
    assert outcome.status == CloseOutcome.FAILED, outcome
    assert "refused before the exchange acted" in outcome.reason, outcome
    assert position.status == Position.Status.OPEN
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED


# --- case 2: an entry that never executed -------------------------------------------------------
def test_cycle_when_entry_503s_past_budget_and_lookups_fail_then_next_cycle_frees_and_trades(
    btc_market: Any, btc: Symbol, impatient_gateway: ExchangeGateway
) -> None:
    btc_market.faults(kind="error", method="POST", path=ORDER, count=1000, status=503)
    btc_market.faults(kind="error", method="GET", path=ORDER, count=1000, status=503)
    first = cycle(btc, impatient_gateway)
    assert first.status == OpenOutcome.FAILED, first
    assert Position.objects.get().status == Position.Status.OPENING
    assert exchange_quantity(btc_market, "BTCUSDT") == 0
    btc_market.clear_faults()

    second = cycle(btc, impatient_gateway)

    assert second.status == OpenOutcome.OPENED, second
    stuck, fresh = Position.objects.order_by("id")
    assert stuck.status == Position.Status.FAILED
    assert fresh.status == Position.Status.OPEN
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 3


def test_cycle_when_entry_clock_skew_twice_then_failed_at_once_and_next_cycle_trades(
    btc_market: Any, btc: Symbol, impatient_gateway: ExchangeGateway
) -> None:
    btc_market.faults(
        kind="error",
        method="POST",
        path=ORDER,
        count=2,
        status=400,
        code=-1021,
        msg="Timestamp for this request is outside of the recvWindow.",
    )
    first = cycle(btc, impatient_gateway)
    assert first.status == OpenOutcome.FAILED, first
    assert "refused before the exchange acted" in first.reason, first
    assert Position.objects.get().status == Position.Status.FAILED

    second = cycle(btc, impatient_gateway)

    assert second.status == OpenOutcome.OPENED, second
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 3
