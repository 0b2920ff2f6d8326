"""Signing, clock, parameters, request weights and rate limits."""

from __future__ import annotations

import ccxt
import pytest

from paper.testing import PaperControl, PaperExchangeServer
from tests.support.paper import BTC, binance_code, make_client


def test_load_markets_when_fetch_currencies_off_then_only_fapi_is_called(
    exchange_server: PaperExchangeServer, control: PaperControl
) -> None:
    client = make_client(exchange_server)

    markets = client.load_markets()

    assert {"BTC/USDT:USDT", "BNB/USDT:USDT", "ETH/USDT:USDT"} <= set(markets)
    assert all(" /fapi/" in key for key in control.stats()["requests"])


def test_load_markets_when_loaded_then_filters_match_binance(exchange: ccxt.binanceusdm) -> None:
    btc = exchange.market(BTC)
    bnb = exchange.market("BNB/USDT:USDT")

    assert btc["precision"]["price"] == 0.1
    assert btc["precision"]["amount"] == 0.001
    assert btc["limits"]["amount"]["min"] == 0.001
    assert btc["limits"]["cost"]["min"] == 5
    assert btc["info"]["pricePrecision"] == 2
    assert btc["info"]["quantityPrecision"] == 3
    assert bnb["precision"]["price"] == 0.01
    assert bnb["precision"]["amount"] == 0.01


def test_fetch_balance_when_api_key_unknown_then_rejected_with_2015(
    exchange_server: PaperExchangeServer, control: PaperControl
) -> None:
    client = make_client(exchange_server, api_key="someone-else")

    with pytest.raises(ccxt.AuthenticationError) as caught:
        client.fetch_balance()

    assert binance_code(caught.value) == -2015


def test_fetch_balance_when_secret_wrong_then_rejected_with_1022(
    exchange_server: PaperExchangeServer, control: PaperControl
) -> None:
    client = make_client(exchange_server, api_secret="not-the-secret")

    with pytest.raises(ccxt.BaseError) as caught:
        client.fetch_balance()

    assert binance_code(caught.value) == -1022


def test_fetch_balance_when_clock_behind_recv_window_then_rejected_with_1021(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.options["timeDifference"] = 20_000  # our timestamps run 20 s late

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fetch_balance()

    assert binance_code(caught.value) == -1021
    assert "outside of the recvWindow" in str(caught.value)


def test_fetch_balance_when_clock_ahead_then_rejected_with_1021(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.options["timeDifference"] = -5_000

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fetch_balance()

    assert binance_code(caught.value) == -1021
    assert "ahead of the server's time" in str(caught.value)


def test_create_order_when_quantity_missing_then_rejected_with_1102(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"})

    assert binance_code(caught.value) == -1102
    assert "'quantity'" in str(caught.value)


def test_create_order_when_quantity_malformed_then_rejected_with_1100(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fapiPrivatePostOrder(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1e-3"}
        )

    assert binance_code(caught.value) == -1100


def test_fetch_ticker_when_symbol_unknown_then_rejected_with_1121(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fapiPublicGetTicker24hr({"symbol": "FOOUSDT"})

    assert binance_code(caught.value) == -1121


def test_request_when_answered_then_weight_header_reports_used_weight(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.fetch_positions()  # positionRisk v3: weight 5

    assert int(exchange.last_response_headers["X-MBX-USED-WEIGHT-1M"]) >= 5


def test_create_order_when_accepted_then_order_count_headers_present(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.001)

    assert exchange.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert exchange.last_response_headers["X-MBX-ORDER-COUNT-1M"] == "1"


def test_request_when_weight_limit_exceeded_then_429_with_retry_after(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.configure(weight_limit_1m=12)

    with pytest.raises(ccxt.DDoSProtection) as caught:
        for _ in range(5):
            exchange.fetch_positions()  # 5 each: the third goes past 12

    assert exchange.last_http_response is not None
    assert "429" in str(caught.value)
    assert binance_code(caught.value) == -1003
    assert int(exchange.last_response_headers["Retry-After"]) >= 1


def test_request_when_client_keeps_going_after_429_then_418_ban(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.configure(weight_limit_1m=8, ban_after=2, ban_seconds=120)
    statuses = []

    for _ in range(6):
        try:
            exchange.fetch_positions()
            statuses.append(200)
        except ccxt.DDoSProtection as e:
            statuses.append(int(str(e).split()[1]))

    assert statuses[:4] == [200, 429, 429, 418]
    assert statuses[4:] == [418, 418]
    assert exchange.last_response_headers["Retry-After"] in ("119", "120")


def test_stats_when_orders_rejected_then_counted_by_code(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.001)
    with pytest.raises(ccxt.BaseError):
        exchange.fapiPrivatePostOrder(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0001"}
        )

    stats = control.stats()

    assert stats["orders_accepted"] == 1
    assert stats["rejections"] == {"-1111": 1}
    assert stats["requests"]["POST /fapi/v1/order"] == 2
    assert stats["weight_1m"] >= 1
