"""Injected faults: latency, timeouts and dropped connections after acceptance, 5xx, 429/418,
and algo orders that open-order queries do not show yet."""

from __future__ import annotations

import time
from decimal import Decimal

import ccxt
import pytest

from paper.testing import PaperControl, PaperExchangeServer
from tests.support.paper import BTC, binance_code, make_client, position_amount


def test_request_when_latency_injected_then_answer_is_delayed(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.faults(kind="latency", method="GET", path="/fapi/v1/ticker", seconds=0.3)
    started = time.monotonic()

    exchange.fetch_ticker(BTC)

    assert time.monotonic() - started >= 0.3


def test_create_order_when_timeout_injected_then_client_times_out_but_order_accepted(
    exchange_server: PaperExchangeServer, control: PaperControl
) -> None:
    client = make_client(exchange_server, timeout_ms=300)
    client.load_markets()
    control.faults(kind="timeout", method="POST", path="/fapi/v1/order", seconds=2)

    with pytest.raises(ccxt.RequestTimeout):
        client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "lost-1"})

    assert position_amount(client, BTC) == Decimal("0.010")
    assert client.fetch_order("", BTC, {"origClientOrderId": "lost-1"})["status"] == "closed"


def test_create_order_when_connection_dropped_after_accept_then_network_error_and_order_exists(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.faults(kind="drop", method="POST", path="/fapi/v1/order")

    with pytest.raises(ccxt.NetworkError):
        exchange.create_order(BTC, "limit", "buy", 0.01, 99_000, {"clientOrderId": "drop-1"})

    assert [o["clientOrderId"] for o in exchange.fetch_open_orders(BTC)] == ["drop-1"]


def test_create_order_when_503_injected_then_exchange_unavailable_and_nothing_placed(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.faults(kind="error", method="POST", path="/fapi/v1/order", status=503)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    assert exchange.last_http_response is not None
    assert binance_code(caught.value) == -1001
    assert exchange.fetch_open_orders(BTC) == []


def test_request_when_429_burst_injected_then_rate_limited_with_retry_after(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.faults(kind="rate_limit", path="/fapi/", count=2, retry_after=7)

    for _ in range(2):
        with pytest.raises(ccxt.DDoSProtection):
            exchange.fetch_balance()
    balance = exchange.fetch_balance()

    assert balance["USDT"]["total"] == 10_000


def test_request_when_418_injected_then_banned_with_retry_after(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.faults(kind="ban", path="/fapi/v1/openOrders", retry_after=120)

    with pytest.raises(ccxt.DDoSProtection) as caught:
        exchange.fetch_open_orders(BTC)

    assert " 418 " in str(caught.value)
    assert exchange.last_response_headers["Retry-After"] == "120"


def test_fetch_open_orders_when_algo_visibility_delayed_then_hidden_but_found_by_id(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    control.faults(kind="algo_hidden", seconds=30)

    algo = exchange.create_order(
        BTC, "market", "sell", None, None, {"stopLossPrice": 95_000, "closePosition": True}
    )

    assert exchange.fetch_open_orders(BTC, params={"trigger": True}) == []
    assert exchange.fetch_order(algo["id"], BTC, {"trigger": True})["status"] == "open"
    assert [a["algoId"] for a in control.open_orders()["algo_orders"]] == [int(algo["id"])]
    control.clear_faults()
    assert [o["id"] for o in exchange.fetch_open_orders(BTC, params={"trigger": True})] == [
        algo["id"]
    ]
