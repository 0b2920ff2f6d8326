"""Symbol filters and order parameters, rejected with Binance's codes and messages."""

from __future__ import annotations

import ccxt
import pytest

from paper.testing import PaperControl
from tests.support.paper import BTC, DOGE, binance_code


def _order(exchange: ccxt.binanceusdm, **params: str) -> dict:
    """Send POST /fapi/v1/order as given, past ccxt's own rounding."""
    return exchange.fapiPrivatePostOrder({"symbol": "BTCUSDT", "side": "BUY", **params})


def test_create_order_when_quantity_over_precision_then_rejected_with_1111(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _order(exchange, type="MARKET", quantity="0.0015")

    assert binance_code(caught.value) == -1111
    assert "Precision is over the maximum defined for this asset." in str(caught.value)


def test_create_order_when_price_over_precision_then_rejected_with_1111(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _order(exchange, type="LIMIT", quantity="0.001", price="99000.123", timeInForce="GTC")

    assert binance_code(caught.value) == -1111


def test_create_order_when_price_off_tick_then_rejected_with_4014(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _order(exchange, type="LIMIT", quantity="0.001", price="99000.15", timeInForce="GTC")

    assert binance_code(caught.value) == -4014
    assert "Price not increased by tick size." in str(caught.value)


def test_create_order_when_quantity_zero_then_rejected_with_4003(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _order(exchange, type="MARKET", quantity="0")

    assert binance_code(caught.value) == -4003


def test_create_order_when_market_quantity_over_market_lot_max_then_rejected_with_4005(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _order(exchange, type="MARKET", quantity="121")  # MARKET_LOT_SIZE maxQty 120

    assert binance_code(caught.value) == -4005
    assert "Quantity greater than max quantity." in str(caught.value)


def test_create_order_when_limit_quantity_over_lot_max_then_rejected_with_4005(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _order(exchange, type="LIMIT", quantity="1001", price="99000", timeInForce="GTC")

    assert binance_code(caught.value) == -4005


def test_create_order_when_notional_under_5_then_rejected_with_4164(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(DOGE, "market", "buy", 10)  # 10 x 0.35 = 3.5 USDT

    assert binance_code(caught.value) == -4164
    assert "Order's notional must be no smaller than 5 (unless you choose reduce only)." in str(
        caught.value
    )


def test_create_order_when_reduce_only_under_min_notional_then_accepted(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(DOGE, "market", "buy", 100)

    order = exchange.create_order(DOGE, "market", "sell", 10, None, {"reduceOnly": True})

    assert order["status"] == "closed"
    assert order["filled"] == 10


def test_create_order_when_limit_above_percent_price_cap_then_rejected_with_4016(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "limit", "sell", 0.001, 105_100)  # mark 100000 x 1.05

    assert binance_code(caught.value) == -4016


def test_create_order_when_limit_below_percent_price_floor_then_rejected_with_4024(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "limit", "buy", 0.001, 94_900)  # mark 100000 x 0.95

    assert binance_code(caught.value) == -4024


@pytest.mark.parametrize("client_id", ["has space", "x" * 37, "bad!char"])
def test_create_order_when_client_order_id_invalid_then_rejected_with_4015(
    exchange: ccxt.binanceusdm, client_id: str
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "limit", "buy", 0.001, 99_000, {"clientOrderId": client_id})

    assert binance_code(caught.value) == -4015


def test_create_order_when_client_order_id_open_then_rejected_with_4116(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.001, 99_000, {"clientOrderId": "arena-1"})

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "limit", "buy", 0.001, 98_000, {"clientOrderId": "arena-1"})

    assert binance_code(caught.value) == -4116
    assert "ClientOrderId is duplicated." in str(caught.value)


def test_create_order_when_client_order_id_of_canceled_order_then_accepted(
    exchange: ccxt.binanceusdm,
) -> None:
    first = exchange.create_order(BTC, "limit", "buy", 0.001, 99_000, {"clientOrderId": "re-1"})
    exchange.cancel_order(first["id"], BTC)

    second = exchange.create_order(BTC, "limit", "buy", 0.001, 98_000, {"clientOrderId": "re-1"})

    assert second["id"] != first["id"]
    assert second["clientOrderId"] == "re-1"


def test_fetch_order_when_looked_up_by_client_order_id_then_found(
    exchange: ccxt.binanceusdm,
) -> None:
    placed = exchange.create_order(BTC, "limit", "buy", 0.001, 99_000, {"clientOrderId": "look-1"})

    found = exchange.fetch_order("", BTC, {"origClientOrderId": "look-1"})

    assert found["id"] == placed["id"]
    assert found["status"] == "open"


def test_create_order_when_side_invalid_then_rejected_with_1117(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fapiPrivatePostOrder(
            {"symbol": "BTCUSDT", "side": "UP", "type": "MARKET", "quantity": "0.001"}
        )

    assert binance_code(caught.value) == -1117


def test_create_order_when_post_only_would_cross_then_rejected_with_5022(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "limit", "buy", 0.001, 100_500, {"postOnly": True})

    assert binance_code(caught.value) == -5022


def test_create_order_when_hedge_position_side_sent_then_rejected_with_4061(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "market", "buy", 0.001, None, {"positionSide": "LONG"})

    assert binance_code(caught.value) == -4061
