"""Conditional orders on /fapi/v1/algoOrder: placement rules, triggers and lifecycle."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from paper.testing import PaperControl
from tests.support.paper import BTC, binance_code, position_amount


def _stop(exchange: ccxt.binanceusdm, price: float, **params: object) -> dict:
    return exchange.create_order(
        BTC, "market", "sell", None, None, {"stopLossPrice": price, "closePosition": True, **params}
    )


def _reduce_only_stop(exchange: ccxt.binanceusdm, price: float) -> dict:
    return exchange.create_order(
        BTC, "market", "sell", 0.01, None, {"stopLossPrice": price, "reduceOnly": True}
    )


def _algo(exchange: ccxt.binanceusdm, **params: str) -> dict:
    """Send POST /fapi/v1/algoOrder as given."""
    return exchange.fapiPrivatePostAlgoOrder(
        {"symbol": "BTCUSDT", "side": "SELL", "algoType": "CONDITIONAL", **params}
    )


def test_create_order_when_stop_market_close_position_then_algo_order_new(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)

    algo = _stop(exchange, 95_000, clientOrderId="sl-1")

    info = algo["info"]
    assert info["algoType"] == "CONDITIONAL"
    assert info["orderType"] == "STOP_MARKET"
    assert info["algoStatus"] == "NEW"
    assert info["clientAlgoId"] == "sl-1"
    assert info["closePosition"] is True
    assert info["triggerPrice"] == "95000.00"
    assert info["workingType"] == "CONTRACT_PRICE"


def test_fetch_open_orders_when_trigger_then_lists_algo_orders_only(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    algo = _stop(exchange, 95_000)
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    algos = exchange.fetch_open_orders(BTC, params={"trigger": True})

    assert [o["id"] for o in algos] == [algo["id"]]
    assert algos[0]["triggerPrice"] == 95_000


def test_stop_market_when_price_gaps_through_then_position_closed_at_new_price(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    algo = _stop(exchange, 95_000)

    control.set_price("BTCUSDT", "94000")

    status = exchange.fetch_order(algo["id"], BTC, {"trigger": True})["info"]
    trade = exchange.fetch_my_trades(BTC)[-1]["info"]
    assert status["algoStatus"] == "FINISHED"
    assert status["actualOrderId"] != ""
    assert position_amount(exchange, BTC) == 0
    assert trade["price"] == "94000.00"  # the price reached, not the trigger
    assert Decimal(trade["realizedPnl"]) == Decimal("-60")
    assert exchange.fetch_open_orders(BTC, params={"trigger": True}) == []


def test_take_profit_market_when_price_reaches_then_position_closed(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    exchange.create_order(
        BTC, "market", "sell", None, None, {"takeProfitPrice": 105_000, "closePosition": True}
    )

    control.set_price("BTCUSDT", "105000")

    assert position_amount(exchange, BTC) == 0
    assert Decimal(exchange.fetch_my_trades(BTC)[-1]["info"]["realizedPnl"]) == Decimal("50")


def test_create_order_when_stop_would_trigger_immediately_then_rejected_with_2021(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        _stop(exchange, 100_500)  # a sell stop above the price fires at once

    assert binance_code(caught.value) == -2021
    assert "Order would immediately trigger." in str(caught.value)


def test_create_algo_when_close_position_with_quantity_then_rejected_with_4137(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _algo(
            exchange,
            type="STOP_MARKET",
            triggerPrice="95000",
            closePosition="true",
            quantity="0.01",
        )

    assert binance_code(caught.value) == -4137


def test_create_algo_when_close_position_on_stop_limit_then_rejected_with_4136(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _algo(exchange, type="STOP", triggerPrice="95000", price="94900", closePosition="true")

    assert binance_code(caught.value) == -4136


def test_create_order_when_eleventh_algo_order_on_symbol_then_rejected_with_4045(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    for i in range(10):
        _reduce_only_stop(exchange, 90_000 + i * 100)

    with pytest.raises(ccxt.BaseError) as caught:
        _reduce_only_stop(exchange, 89_000)

    assert binance_code(caught.value) == -4045


def test_create_order_when_client_algo_id_open_then_rejected_with_4116(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    _stop(exchange, 95_000, clientOrderId="sl-dup")

    with pytest.raises(ccxt.BaseError) as caught:
        _stop(exchange, 94_000, clientOrderId="sl-dup")

    assert binance_code(caught.value) == -4116


def test_fetch_order_when_trigger_and_client_algo_id_then_found(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    algo = _stop(exchange, 95_000, clientOrderId="sl-find")

    found = exchange.fetch_order("", BTC, {"trigger": True, "clientOrderId": "sl-find"})

    assert found["id"] == algo["id"]
    assert found["info"]["algoStatus"] == "NEW"


def test_fetch_order_when_algo_id_unknown_then_rejected_with_2013(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        exchange.fetch_order("1999999999999", BTC, {"trigger": True})

    assert binance_code(caught.value) == -2013


def test_cancel_order_when_trigger_then_algo_canceled(exchange: ccxt.binanceusdm) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    algo = _stop(exchange, 95_000)

    answer = exchange.cancel_order(algo["id"], BTC, {"trigger": True})

    assert answer["info"]["msg"] == "success"
    assert exchange.fetch_order(algo["id"], BTC, {"trigger": True})["status"] == "canceled"
    assert exchange.fetch_open_orders(BTC, params={"trigger": True}) == []


def test_cancel_all_orders_when_trigger_then_every_algo_canceled(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    _stop(exchange, 95_000)
    _reduce_only_stop(exchange, 94_000)
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)

    exchange.cancel_all_orders(BTC, {"trigger": True})

    assert exchange.fetch_open_orders(BTC, params={"trigger": True}) == []
    assert len(exchange.fetch_open_orders(BTC)) == 1


@pytest.mark.parametrize(("exit_on_flat", "status"), [("expire", "EXPIRED"), ("keep", "NEW")])
def test_position_when_closed_by_market_order_then_close_position_algos_follow_option(
    exchange: ccxt.binanceusdm, control: PaperControl, exit_on_flat: str, status: str
) -> None:
    control.set_options(exit_on_flat=exit_on_flat)
    exchange.create_order(BTC, "market", "buy", 0.01)
    algo = _stop(exchange, 95_000)

    exchange.create_order(BTC, "market", "sell", 0.01)

    assert exchange.fetch_order(algo["id"], BTC, {"trigger": True})["info"]["algoStatus"] == status


def test_stop_limit_when_triggered_then_limit_order_placed(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    exchange.create_order(
        BTC, "limit", "sell", 0.01, 95_500, {"stopLossPrice": 95_000, "reduceOnly": True}
    )

    control.set_price("BTCUSDT", "95000")  # triggers; a sell limit above the market rests

    orders = exchange.fetch_open_orders(BTC)
    assert len(orders) == 1
    assert orders[0]["info"]["origType"] == "STOP"
    assert orders[0]["price"] == 95_500
    control.set_price("BTCUSDT", "95600")
    assert position_amount(exchange, BTC) == 0
    assert exchange.fetch_my_trades(BTC)[-1]["info"]["maker"] is True


def test_trailing_stop_when_price_rises_then_falls_by_callback_then_closes(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    exchange.create_order(
        BTC, "market", "sell", 0.01, None, {"trailingPercent": 1, "reduceOnly": True}
    )

    control.set_price("BTCUSDT", "110000")
    control.set_price("BTCUSDT", "109000")  # 0.9 % off the high: holds
    assert position_amount(exchange, BTC) == Decimal("0.010")
    control.set_price("BTCUSDT", "108800")  # past 108900

    assert position_amount(exchange, BTC) == 0


def test_reduce_only_stop_when_no_position_at_trigger_then_expires_without_fill(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    algo = exchange.create_order(
        BTC, "market", "sell", 0.01, None, {"stopLossPrice": 95_000, "reduceOnly": True}
    )

    control.set_price("BTCUSDT", "94000")

    assert exchange.fetch_order(algo["id"], BTC, {"trigger": True})["info"]["algoStatus"] in (
        "EXPIRED",
    )
    assert position_amount(exchange, BTC) == 0


def test_stop_when_working_type_mark_price_then_triggers_on_mark_not_last(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    mark_stop = _stop(exchange, 95_000, workingType="MARK_PRICE")

    control.set_price("BTCUSDT", "94000", mark_price="96000")  # last through, mark not
    assert exchange.fetch_order(mark_stop["id"], BTC, {"trigger": True})["status"] == "open"
    control.set_price("BTCUSDT", "94500", mark_price="94900")

    assert position_amount(exchange, BTC) == 0
    assert exchange.fetch_my_trades(BTC)[-1]["info"]["price"] == "94500.00"
