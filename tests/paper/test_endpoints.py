"""Endpoints a bot or its users call, in Binance's shapes, and ccxt's unified methods on them."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest
import requests

from paper.testing import PaperControl, PaperExchangeServer
from tests.support.paper import BNB, BTC, DOGE, binance_code, make_client, position_amount


def test_fetch_tickers_when_all_symbols_then_weighted_average_inside_the_day_range(
    exchange: ccxt.binanceusdm,
) -> None:
    tickers = exchange.fetch_tickers()

    assert len(tickers) == 6
    for ticker in tickers.values():
        assert ticker["low"] <= ticker["vwap"] <= ticker["high"], ticker["symbol"]


def test_fetch_trades_when_price_moved_then_recent_prints_oldest_first(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_price("BNBUSDT", "965")
    control.set_price("BNBUSDT", "966")

    trades = exchange.fetch_trades(BNB, limit=2)

    assert [t["price"] for t in trades] == [965, 966]
    assert trades[0]["id"] < trades[1]["id"]
    assert trades[1]["side"] == "buy"  # a rising print: the taker bought


def test_fetch_agg_trades_when_from_id_given_then_from_that_id_on(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_price("DOGEUSDT", "0.351")
    control.set_price("DOGEUSDT", "0.352")
    first = exchange.fapiPublicGetAggTrades({"symbol": "DOGEUSDT", "limit": 2})

    rows = exchange.fapiPublicGetAggTrades({"symbol": "DOGEUSDT", "fromId": first[1]["a"]})

    assert [r["p"] for r in rows] == ["0.352000"]
    assert set(rows[0]) == {"a", "p", "q", "f", "l", "T", "m"}


def test_fetch_open_order_when_open_then_found_and_when_filled_then_2013(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    order = exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    found = exchange.fapiPrivateGetOpenOrder({"symbol": "BTCUSDT", "orderId": order["id"]})
    control.set_price("BTCUSDT", "98900")
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fapiPrivateGetOpenOrder({"symbol": "BTCUSDT", "orderId": order["id"]})

    assert found["status"] == "NEW"
    assert binance_code(caught.value) == -2013


def test_edit_order_when_limit_open_then_price_and_quantity_changed(
    exchange: ccxt.binanceusdm,
) -> None:
    order = exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    edited = exchange.edit_order(order["id"], BTC, "limit", "buy", 0.02, 98_500)

    assert edited["id"] == order["id"]
    rows = exchange.fetch_open_orders(BTC)
    assert [(o["price"], o["amount"]) for o in rows] == [(98_500, 0.02)]


def test_edit_order_when_nothing_changes_then_rejected_with_5027(
    exchange: ccxt.binanceusdm,
) -> None:
    order = exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.edit_order(order["id"], BTC, "limit", "buy", 0.01, 99_000)

    assert binance_code(caught.value) == -5027


def test_edit_order_when_new_price_crosses_then_fills_as_taker(
    exchange: ccxt.binanceusdm,
) -> None:
    order = exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    exchange.edit_order(order["id"], BTC, "limit", "buy", 0.01, 100_100)

    assert position_amount(exchange, BTC) == Decimal("0.01")
    assert exchange.fetch_my_trades(BTC)[-1]["info"]["maker"] is False


def test_add_margin_when_isolated_position_then_isolated_wallet_grows_wallet_unchanged(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.set_margin_mode("isolated", BTC)
    exchange.create_order(BTC, "market", "buy", 0.01)
    before = exchange.fetch_positions([BTC])[0]["info"]
    wallet = exchange.fetch_balance()["info"]["totalWalletBalance"]

    exchange.add_margin(BTC, 25)

    after = exchange.fetch_positions([BTC])[0]["info"]
    assert Decimal(after["isolatedWallet"]) == Decimal(before["isolatedWallet"]) + 25
    assert exchange.fetch_balance()["info"]["totalWalletBalance"] == wallet


def test_reduce_margin_when_below_initial_margin_then_rejected_with_4051(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.set_margin_mode("isolated", BTC)
    exchange.create_order(BTC, "market", "buy", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.reduce_margin(BTC, 10)

    assert binance_code(caught.value) == -4051


def test_account_and_symbol_config_when_asked_then_binance_fields(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.set_leverage(30, BTC)

    account = exchange.fapiPrivateGetAccountConfig()
    config = exchange.fapiPrivateGetSymbolConfig({"symbol": "BTCUSDT"})

    assert account["dualSidePosition"] is False and account["canTrade"] is True
    assert config[0]["leverage"] == 30
    assert config[0]["marginType"] == "CROSSED"


def test_set_leverage_when_between_bracket_maxima_then_max_notional_of_lower_cap(
    exchange: ccxt.binanceusdm,
) -> None:
    brackets = exchange.fapiPrivateGetLeverageBracket({"symbol": "BTCUSDT"})["brackets"]
    allowing = [b for b in brackets if b["initialLeverage"] >= 30]
    expected = max(b["notionalCap"] for b in allowing)

    answer = exchange.fapiPrivatePostLeverage({"symbol": "BTCUSDT", "leverage": 30})

    assert Decimal(answer["maxNotionalValue"]) == Decimal(str(expected))
    risk = exchange.fapiPrivateV2GetPositionRisk({"symbol": "BTCUSDT"})
    assert risk[0]["maxNotionalValue"] == answer["maxNotionalValue"]


def test_adl_quantile_when_position_open_then_listed_with_both_rank(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(DOGE, "market", "buy", 100)
    control.set_price("DOGEUSDT", "0.4")

    rows = exchange.fapiPrivateGetAdlQuantile()

    assert [r["symbol"] for r in rows] == ["DOGEUSDT"]
    assert 1 <= rows[0]["adlQuantile"]["BOTH"] <= 4


def test_force_orders_when_liquidated_then_liquidation_order_listed(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.set_margin_mode("isolated", BTC)
    exchange.create_order(BTC, "market", "buy", 0.01)
    control.set_price("BTCUSDT", "94000")

    rows = exchange.fapiPrivateGetForceOrders({"symbol": "BTCUSDT"})

    assert [r["type"] for r in rows] == ["LIQUIDATION"]
    assert rows[0]["clientOrderId"].startswith("autoclose-")
    assert exchange.fapiPrivateGetForceOrders({"autoCloseType": "ADL"}) == []


def test_unknown_endpoint_when_called_then_404_without_binance_code(
    exchange_server: PaperExchangeServer,
) -> None:
    answer = requests.get(f"{exchange_server.url}/fapi/v1/noSuchThing", timeout=5)

    assert answer.status_code == 404
    assert '"code"' not in answer.text


def test_unknown_endpoint_when_ccxt_calls_it_then_error_is_not_a_retryable_answer(
    exchange_server: PaperExchangeServer, control: PaperControl
) -> None:
    client = make_client(exchange_server)
    client.urls["api"]["fapiPublic"] = exchange_server.url + "/fapi/v9"

    with pytest.raises(ccxt.BaseError) as caught:
        client.fapiPublicGetPing()

    assert "404" in str(caught.value)
    assert "-1000" not in str(caught.value)
    assert control.stats()["requests"] == {"GET /fapi/v9/ping": 1}


def test_batch_orders_when_five_sent_then_one_order_rate_unit(
    exchange: ccxt.binanceusdm,
) -> None:
    orders = [
        {"symbol": BTC, "type": "limit", "side": "buy", "amount": 0.01, "price": 99_000 + i}
        for i in range(5)
    ]

    exchange.create_orders(orders)

    headers = exchange.last_response_headers
    assert headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert len(exchange.fetch_open_orders(BTC)) == 5
