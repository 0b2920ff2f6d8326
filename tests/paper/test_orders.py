"""Market and limit orders: fills, fees, trades, lookups, cancels and batches."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from paper.testing import PaperControl
from tests.support.paper import BTC, binance_code, position_amount


def test_create_order_when_market_buy_then_filled_at_last_price_with_taker_fee(
    exchange: ccxt.binanceusdm,
) -> None:
    order = exchange.create_order(BTC, "market", "buy", 0.01)

    trades = exchange.fetch_my_trades(BTC)
    assert order["status"] == "closed"
    assert order["average"] == 100_000
    assert len(trades) == 1
    info = trades[0]["info"]
    assert info["price"] == "100000.00"
    assert info["qty"] == "0.010"
    assert Decimal(info["commission"]) == Decimal("0.5")  # 1000 USDT x 0.05 %
    assert info["commissionAsset"] == "USDT"
    assert info["buyer"] is True
    assert info["maker"] is False
    assert info["positionSide"] == "BOTH"
    assert info["orderId"] == int(order["id"])
    assert Decimal(info["realizedPnl"]) == 0


def test_create_order_when_limit_below_market_then_rests_until_price_crosses(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    order = exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)
    assert exchange.fetch_order(order["id"], BTC)["status"] == "open"

    control.set_price("BTCUSDT", "98900")

    filled = exchange.fetch_order(order["id"], BTC)
    trade = exchange.fetch_my_trades(BTC)[0]["info"]
    assert filled["status"] == "closed"
    assert filled["average"] == 99_000
    assert trade["maker"] is True
    assert Decimal(trade["commission"]) == Decimal("0.198")  # 990 USDT x 0.02 %


def test_create_order_when_limit_crosses_at_placement_then_fills_as_taker(
    exchange: ccxt.binanceusdm,
) -> None:
    order = exchange.create_order(BTC, "limit", "buy", 0.01, 101_000)

    trade = exchange.fetch_my_trades(BTC)[0]["info"]
    assert order["status"] == "closed"
    assert trade["price"] == "100000.00"
    assert trade["maker"] is False


def test_create_order_when_conditional_type_on_order_endpoint_then_rejected_with_4120(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fapiPrivatePostOrder(
            {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "STOP_MARKET",
                "stopPrice": "95000",
                "closePosition": "true",
            }
        )

    assert binance_code(caught.value) == -4120
    assert "Please use the Algo Order API endpoints instead." in str(caught.value)


def test_fetch_order_when_algo_id_sent_to_order_endpoint_then_rejected_with_2013(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    algo = exchange.create_order(
        BTC, "market", "sell", None, None, {"stopLossPrice": 95_000, "closePosition": True}
    )

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fetch_order(algo["id"], BTC)

    assert binance_code(caught.value) == -2013


def test_cancel_order_when_algo_id_sent_to_order_endpoint_then_rejected_with_2011(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    algo = exchange.create_order(
        BTC, "market", "sell", None, None, {"stopLossPrice": 95_000, "closePosition": True}
    )

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.cancel_order(algo["id"], BTC)

    assert binance_code(caught.value) == -2011


def test_cancel_order_when_open_then_canceled_and_gone_from_open_orders(
    exchange: ccxt.binanceusdm,
) -> None:
    order = exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    canceled = exchange.cancel_order(order["id"], BTC)

    assert canceled["status"] == "canceled"
    assert exchange.fetch_open_orders(BTC) == []


def test_cancel_order_when_already_filled_then_rejected_with_2011(
    exchange: ccxt.binanceusdm,
) -> None:
    order = exchange.create_order(BTC, "market", "buy", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.cancel_order(order["id"], BTC)

    assert binance_code(caught.value) == -2011
    assert "Unknown order sent." in str(caught.value)


def test_cancel_all_orders_when_several_open_then_all_canceled(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)
    exchange.create_order(BTC, "limit", "buy", 0.01, 98_000)

    exchange.cancel_all_orders(BTC)

    assert exchange.fetch_open_orders(BTC) == []


def test_fetch_open_orders_when_orders_rest_then_listed_with_binance_fields(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000, {"clientOrderId": "open-1"})

    orders = exchange.fetch_open_orders(BTC)

    assert [o["clientOrderId"] for o in orders] == ["open-1"]
    info = orders[0]["info"]
    assert info["price"] == "99000.00"
    assert info["origQty"] == "0.010"
    assert info["positionSide"] == "BOTH"
    assert info["timeInForce"] == "GTC"


def test_create_orders_when_one_of_two_invalid_then_other_accepted(
    exchange: ccxt.binanceusdm,
) -> None:
    orders = exchange.create_orders(
        [
            {"symbol": BTC, "type": "limit", "side": "buy", "amount": 0.01, "price": 99_000},
            {"symbol": BTC, "type": "limit", "side": "buy", "amount": 0.01, "price": 90_000},
        ]
    )

    # ccxt sorts by timestamp, so the rejected one (no timestamp) may come first.
    by_status = {o["status"]: o for o in orders}
    assert set(by_status) == {"open", "rejected"}
    assert by_status["rejected"]["info"]["code"] == -4024
    assert len(exchange.fetch_open_orders(BTC)) == 1


def test_create_order_when_sell_closes_long_then_realized_pnl_reported(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    control.set_price("BTCUSDT", "101000")

    exchange.create_order(BTC, "market", "sell", 0.01)

    close = exchange.fetch_my_trades(BTC)[-1]["info"]
    assert Decimal(close["realizedPnl"]) == Decimal("10")
    assert close["buyer"] is False
    assert position_amount(exchange, BTC) == 0
