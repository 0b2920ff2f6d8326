"""The gateway against the paper exchange over HTTP: retries, lookups, request log."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.errors import OrderRejected, RateLimited
from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from trading.gateway import exchange_gateway
from trading.models import ExchangeRequest


def requests_to(paper: object, key: str) -> int:
    return paper.stats()["requests"].get(key, 0)


def test_create_order_when_precision_too_fine_then_raised_once_and_never_retried(
    scenario_market: object,
    recording_gateway: ExchangeGateway,
    sleeps: list[float],
    expect_precision_rejection: None,
) -> None:
    # Arrange: 0.0111 BTC has four decimals; BTCUSDT allows three.
    # Act
    with pytest.raises(OrderRejected) as raised:
        recording_gateway.create_market_order(
            symbol="BTCUSDT",
            side="BUY",
            quantity=Decimal("0.0111"),
            client_order_id="arena-test-precision",
            reduce_only=False,
        )

    # Assert
    assert raised.value.code == -1111
    assert requests_to(scenario_market, "POST /fapi/v1/order") == 1
    assert requests_to(scenario_market, "GET /fapi/v1/order") == 0
    assert sleeps.calls == []
    logged = ExchangeRequest.objects.get(action="create_market_order")
    assert (logged.ok, logged.error_code, logged.client_order_id) == (
        False,
        -1111,
        "arena-test-precision",
    )


def test_fetch_when_503_burst_then_retried_until_answered(
    scenario_market: object, recording_gateway: ExchangeGateway, sleeps: list[float]
) -> None:
    scenario_market.faults(kind="error", status=503, method="GET", path="/fapi/v2/account", count=3)

    balance = recording_gateway.fetch_balance()

    assert balance.equity == Decimal("1833.33")
    assert requests_to(scenario_market, "GET /fapi/v2/account") == 4
    assert len(sleeps.calls) == 3
    assert (
        list(
            ExchangeRequest.objects.filter(action="fetch_balance").values_list("ok", flat=True)
        ).count(False)
        == 3
    )


@pytest.mark.parametrize("kind", ["rate_limit", "ban"])
def test_fetch_when_429_or_418_with_retry_after_then_waits_that_long_and_retries(
    scenario_market: object, recording_gateway: ExchangeGateway, sleeps: list[float], kind: str
) -> None:
    scenario_market.faults(kind=kind, retry_after=7, method="GET", path="/fapi/v2/account")

    recording_gateway.fetch_balance()

    assert requests_to(scenario_market, "GET /fapi/v2/account") == 2
    assert sleeps.calls and sleeps.calls[0] >= 7


def test_fetch_when_clock_skewed_then_resyncs_once_and_succeeds(
    scenario_market: object, recording_gateway: ExchangeGateway
) -> None:
    # Our clock 1000 s behind the exchange: every signed request is outside recvWindow (-1021).
    recording_gateway.client.options["timeDifference"] = 1_000_000

    balance = recording_gateway.fetch_balance()

    assert balance.wallet == Decimal("1833.33")
    assert requests_to(scenario_market, "GET /fapi/v1/time") == 1
    assert requests_to(scenario_market, "GET /fapi/v2/account") == 2
    assert scenario_market.stats()["rejections"] == {"-1021": 1}


def test_create_order_when_answer_times_out_then_found_by_client_id_not_resent(
    scenario_market: object, recording_gateway: ExchangeGateway, settings: object
) -> None:
    recording_gateway.client.timeout = 300  # ms: the fault holds the answer for 1.5 s
    scenario_market.faults(kind="timeout", seconds=1.5, method="POST", path="/fapi/v1/order")

    order = recording_gateway.create_market_order(
        symbol="BTCUSDT",
        side="BUY",
        quantity=Decimal("0.011"),
        client_order_id="arena-test-timeout",
        reduce_only=False,
    )

    assert (order.status, order.filled_quantity) == ("FILLED", Decimal("0.011"))
    assert requests_to(scenario_market, "POST /fapi/v1/order") == 1
    assert requests_to(scenario_market, "GET /fapi/v1/order") == 1
    assert scenario_market.stats()["orders_accepted"] == 1


def test_create_order_when_connection_dropped_then_found_by_client_id_not_resent(
    scenario_market: object, recording_gateway: ExchangeGateway
) -> None:
    scenario_market.faults(kind="drop", method="POST", path="/fapi/v1/order")

    order = recording_gateway.create_market_order(
        symbol="BNBUSDT",
        side="SELL",
        quantity=Decimal("1.14"),
        client_order_id="arena-test-drop",
        reduce_only=False,
    )

    assert order.filled_quantity == Decimal("1.14")
    assert requests_to(scenario_market, "POST /fapi/v1/order") == 1
    assert scenario_market.stats()["orders_accepted"] == 1


def test_create_order_when_503_before_handling_then_lookup_finds_nothing_and_resends_once(
    scenario_market: object, recording_gateway: ExchangeGateway
) -> None:
    scenario_market.faults(kind="error", status=503, method="POST", path="/fapi/v1/order")

    order = recording_gateway.create_market_order(
        symbol="BTCUSDT",
        side="BUY",
        quantity=Decimal("0.011"),
        client_order_id="arena-test-503",
        reduce_only=False,
    )

    assert order.filled_quantity == Decimal("0.011")
    assert requests_to(scenario_market, "GET /fapi/v1/order") == 1
    assert requests_to(scenario_market, "POST /fapi/v1/order") == 2
    assert scenario_market.stats()["orders_accepted"] == 1


def test_ensure_leverage_when_exchange_already_matches_then_sends_no_change(
    scenario_market: object, recording_gateway: ExchangeGateway
) -> None:
    changed_first = recording_gateway.ensure_leverage(symbol="BTCUSDT", leverage=3)
    changed_again = recording_gateway.ensure_leverage(symbol="BTCUSDT", leverage=3)

    assert (changed_first, changed_again) == (True, False)
    assert requests_to(scenario_market, "POST /fapi/v1/leverage") == 1


def test_fetch_when_banned_past_retry_budget_then_later_calls_send_nothing_until_it_ends(
    scenario_market: object, sleeps: list[float]
) -> None:
    impatient = exchange_gateway(retry_policy=RetryPolicy(max_total_seconds=5, sleep=sleeps))
    scenario_market.faults(kind="ban", retry_after=90, method="GET", path="/fapi/v2/account")
    with pytest.raises(RateLimited):
        impatient.fetch_balance()
    sent = sum(scenario_market.stats()["requests"].values())

    # Another worker's gateway (a new one) honours the same ban, read from the request log.
    with pytest.raises(RateLimited, match="not sent"):
        exchange_gateway(retry_policy=RetryPolicy(sleep=sleeps)).fetch_mark_price(symbol="BTCUSDT")

    assert sum(scenario_market.stats()["requests"].values()) == sent
    assert ExchangeRequest.objects.filter(retry_until__isnull=False).count() == 1


def test_fetch_when_minute_weight_budget_used_then_nothing_sent_until_next_minute(
    scenario_market: object,
    recording_gateway: ExchangeGateway,
    settings: object,
    time_machine: object,
) -> None:
    # Start of a fresh minute, so the test cannot straddle Binance's one-minute window.
    next_minute = (int(time.time()) // 60 + 1) * 60
    time_machine.move_to(datetime.fromtimestamp(next_minute + 1, tz=UTC), tick=True)
    settings.EXCHANGE_WEIGHT_BUDGET_1M = 20
    recording_gateway = exchange_gateway()  # the budget is read when the gateway is built
    while recording_gateway.weight_used < 20:  # positionRisk weighs 5: four calls reach the budget
        recording_gateway.fetch_positions()
    sent = sum(scenario_market.stats()["requests"].values())

    with pytest.raises(RateLimited, match="weight budget used this minute"):
        recording_gateway.fetch_balance()

    assert sum(scenario_market.stats()["requests"].values()) == sent
