"""closePosition conditional orders: one per type and side, something to close, Binance's fields,
and what becomes of the other one when the position goes flat (both sides of the option)."""

from __future__ import annotations

import ccxt
import pytest

from paper.testing import PaperControl
from tests.support.paper import BTC, binance_code, position_amount


def _close_stop(exchange: ccxt.binanceusdm, price: float, **params: object) -> dict:
    return exchange.create_order(
        BTC, "market", "sell", None, None, {"stopLossPrice": price, "closePosition": True, **params}
    )


def _close_take_profit(exchange: ccxt.binanceusdm, price: float) -> dict:
    return exchange.create_order(
        BTC, "market", "sell", None, None, {"takeProfitPrice": price, "closePosition": True}
    )


def _status(exchange: ccxt.binanceusdm, algo: dict) -> str:
    return exchange.fetch_order(algo["id"], BTC, {"trigger": True})["info"]["algoStatus"]


def test_create_close_position_stop_when_one_open_on_same_side_then_rejected_with_4130(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    first = _close_stop(exchange, 95_000)

    with pytest.raises(ccxt.BaseError) as caught:
        _close_stop(exchange, 96_000, workingType="MARK_PRICE")

    assert binance_code(caught.value) == -4130
    open_algos = exchange.fetch_open_orders(BTC, params={"trigger": True})
    assert [o["id"] for o in open_algos] == [first["id"]]


def test_create_close_position_take_profit_when_stop_open_then_both_accepted(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    _close_stop(exchange, 95_000)

    _close_take_profit(exchange, 105_000)

    assert len(exchange.fetch_open_orders(BTC, params={"trigger": True})) == 2


def test_create_close_position_stop_when_first_canceled_then_accepted(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    first = _close_stop(exchange, 95_000)
    exchange.cancel_order(first["id"], BTC, {"trigger": True})

    second = _close_stop(exchange, 96_000)

    assert _status(exchange, second) == "NEW"


def test_create_close_position_stop_when_no_position_then_rejected_with_4509(
    exchange: ccxt.binanceusdm,
) -> None:
    with pytest.raises(ccxt.BaseError) as caught:
        _close_stop(exchange, 95_000)

    assert binance_code(caught.value) == -4509
    assert exchange.fetch_open_orders(BTC, params={"trigger": True}) == []


def test_create_close_position_stop_when_no_position_and_option_accept_then_waits(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(close_without_position="accept")

    algo = _close_stop(exchange, 95_000)

    assert _status(exchange, algo) == "NEW"


def test_create_close_position_stop_when_entry_order_open_then_accepted(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)  # "open positions or open orders"

    algo = _close_stop(exchange, 95_000)

    assert _status(exchange, algo) == "NEW"


def test_close_position_stop_when_listed_then_gte_gtc_and_reduce_only(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    _close_stop(exchange, 95_000)

    info = exchange.fetch_open_orders(BTC, params={"trigger": True})[0]["info"]

    assert info["timeInForce"] == "GTE_GTC"
    assert info["reduceOnly"] is True
    assert info["closePosition"] is True


@pytest.mark.parametrize(("exit_on_flat", "status"), [("expire", "EXPIRED"), ("keep", "NEW")])
def test_stop_when_it_closes_position_then_take_profit_follows_option(
    exchange: ccxt.binanceusdm, control: PaperControl, exit_on_flat: str, status: str
) -> None:
    control.set_options(exit_on_flat=exit_on_flat)
    exchange.create_order(BTC, "market", "buy", 0.01)
    stop = _close_stop(exchange, 95_000)
    take_profit = _close_take_profit(exchange, 105_000)

    control.set_price("BTCUSDT", "94000")

    assert position_amount(exchange, BTC) == 0
    assert _status(exchange, stop) == "FINISHED"
    assert _status(exchange, take_profit) == status


def test_leftover_take_profit_when_kept_and_new_long_opened_then_it_closes_the_new_one(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(exit_on_flat="keep")
    exchange.create_order(BTC, "market", "buy", 0.01)
    _close_take_profit(exchange, 105_000)
    exchange.create_order(BTC, "market", "sell", 0.01)

    exchange.create_order(BTC, "market", "buy", 0.02)
    control.set_price("BTCUSDT", "105500")

    # The leftover is live: it closed a position it was never placed for.
    assert position_amount(exchange, BTC) == 0


def test_triggered_close_position_stop_when_fetched_then_links_the_order_it_became(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    stop = _close_stop(exchange, 95_000)

    control.set_price("BTCUSDT", "94000")

    info = exchange.fetch_order(stop["id"], BTC, {"trigger": True})["info"]
    child = exchange.fetch_order(info["actualOrderId"], BTC)
    assert child["info"]["origType"] == "STOP_MARKET"
    assert child["info"]["timeInForce"] == "GTE_GTC"
    assert child["status"] == "closed"
