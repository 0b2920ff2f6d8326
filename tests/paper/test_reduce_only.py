"""Reduce-only orders: checked when placed (-2022 or shrink, -4118) and again when they fill."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from paper.testing import PaperControl
from tests.support.paper import BTC, binance_code, position_amount

REDUCE = {"reduceOnly": True}


def test_resting_reduce_only_sell_when_position_partly_closed_then_fills_rest_never_flips(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.02)
    resting = exchange.create_order(BTC, "limit", "sell", 0.02, 101_000, REDUCE)
    exchange.create_order(BTC, "market", "sell", 0.015)  # a plain close of most of it

    control.set_price("BTCUSDT", "101000")

    assert position_amount(exchange, BTC) == 0
    order = exchange.fetch_order(resting["id"], BTC)
    assert order["info"]["status"] == "EXPIRED"
    assert Decimal(order["info"]["executedQty"]) == Decimal("0.005")


def test_resting_reduce_only_sell_when_position_closed_elsewhere_then_expires_unfilled(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    resting = exchange.create_order(BTC, "limit", "sell", 0.01, 101_000, REDUCE)
    exchange.create_order(BTC, "market", "sell", 0.01)  # plain order: -4118 does not apply

    control.set_price("BTCUSDT", "101000")

    assert position_amount(exchange, BTC) == 0
    assert exchange.fetch_order(resting["id"], BTC)["info"]["status"] == "EXPIRED"


def test_reduce_only_orders_when_total_exceeds_position_then_rejected_with_4118(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.02)
    exchange.create_order(BTC, "limit", "sell", 0.015, 101_000, REDUCE)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "limit", "sell", 0.01, 102_000, REDUCE)

    assert binance_code(caught.value) == -4118
    assert len(exchange.fetch_open_orders(BTC)) == 1


def test_reduce_only_order_when_larger_than_position_then_rejected_with_2022(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "market", "sell", 0.02, None, REDUCE)

    assert binance_code(caught.value) == -2022
    assert position_amount(exchange, BTC) == Decimal("0.01")


def test_reduce_only_order_when_larger_than_position_and_option_shrink_then_closes_exactly(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(oversize_reduce_only="shrink")
    exchange.create_order(BTC, "market", "buy", 0.01)

    order = exchange.create_order(BTC, "market", "sell", 0.02, None, REDUCE)

    assert position_amount(exchange, BTC) == 0
    assert Decimal(order["info"]["origQty"]) == Decimal("0.01")


def test_reduce_only_order_when_it_would_open_then_rejected_with_2022(
    exchange: ccxt.binanceusdm,
) -> None:
    exchange.create_order(BTC, "market", "sell", 0.01)

    with pytest.raises(ccxt.BaseError) as caught:
        exchange.create_order(BTC, "market", "sell", 0.01, None, REDUCE)

    assert binance_code(caught.value) == -2022
