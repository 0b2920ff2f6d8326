"""Fills are not free: stops fill past their trigger, large market orders walk the book, and the
replay's mark price is not the last price."""

from __future__ import annotations

from decimal import Decimal

import ccxt

from paper.candles import MINUTE_MS, Candle
from paper.engine import Engine
from paper.feed import ReplayFeed
from paper.market import Market
from paper.params import Params
from paper.records import ZERO
from paper.testing import PaperControl
from tests.support.paper import BTC, position_amount


def _long_with_stop(exchange: ccxt.binanceusdm, trigger: float) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    exchange.create_order(
        BTC, "market", "sell", None, None, {"stopLossPrice": trigger, "closePosition": True}
    )


def test_stop_when_price_gaps_through_and_spread_set_then_fills_that_far_beyond(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(stop_spread_bps=10)
    _long_with_stop(exchange, 95_000)

    control.set_price("BTCUSDT", "94000")

    assert exchange.fetch_my_trades(BTC)[-1]["info"]["price"] == "93906.00"  # 94000 - 10 bps


def test_stop_when_spread_zero_then_fills_at_the_price_reached_not_the_trigger(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(stop_spread_bps=0)
    _long_with_stop(exchange, 95_000)

    control.set_price("BTCUSDT", "94000")

    assert exchange.fetch_my_trades(BTC)[-1]["info"]["price"] == "94000.00"


def test_market_order_when_larger_than_one_level_then_walks_the_book_with_impact(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(market_depth=1000, depth_step_bps=1)  # 0.01 BTC per level, 10 apart

    order = exchange.create_order(BTC, "market", "buy", 0.035)

    trades = exchange.fetch_my_trades(BTC)
    assert [(t["price"], t["amount"]) for t in trades] == [
        (100_000, 0.01),
        (100_010, 0.01),
        (100_020, 0.01),
        (100_030, 0.005),
    ]
    assert Decimal(order["info"]["avgPrice"]) > 100_000
    assert position_amount(exchange, BTC) == Decimal("0.035")


def test_fetch_order_book_when_depth_set_then_levels_match_what_market_orders_pay(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(market_depth=1000, depth_step_bps=1)

    book = exchange.fetch_order_book(BTC, 5)

    assert [b[0] for b in book["bids"]] == [100_000, 99_990, 99_980, 99_970, 99_960]
    assert book["asks"][0][0] == 100_000.1
    assert all(level[1] == 0.01 for level in book["bids"] + book["asks"])
    assert book["bids"][0][0] < book["asks"][0][0]


def _candle(index: int, o: str, h: str, lo: str, c: str) -> Candle:
    return Candle(
        open_time=index * MINUTE_MS,
        open=Decimal(o),
        high=Decimal(h),
        low=Decimal(lo),
        close=Decimal(c),
        volume=Decimal(1),
        close_time=index * MINUTE_MS + MINUTE_MS - 1,
        quote_volume=Decimal(o),
        count=1,
        taker_buy_volume=ZERO,
        taker_buy_quote_volume=ZERO,
    )


def test_replay_mark_price_when_price_falls_then_lags_the_last_price() -> None:
    engine = Engine()
    rows = [_candle(0, "100000", "100000", "100000", "100000")]
    rows.append(_candle(1, "100000", "100000", "97000", "97000"))
    feed = ReplayFeed(engine, Market(engine), {"BTCUSDT": rows}, warmup=1)
    feed.prime()

    for _ in range(ReplayFeed.POINTS):
        feed.step()

    assert engine.last["BTCUSDT"] == Decimal("97000")
    assert engine.mark["BTCUSDT"] > Decimal("97000")  # smoothed: still on its way down
    assert engine.mark["BTCUSDT"] < Decimal("100000")


def test_replay_when_mark_lags_then_mark_price_stop_holds_while_contract_stop_fires() -> None:
    engine = Engine(options=None)
    rows = [_candle(0, "100000", "100000", "100000", "100000")]
    rows.append(_candle(1, "100000", "100000", "98900", "98900"))
    feed = ReplayFeed(engine, Market(engine), {"BTCUSDT": rows}, warmup=1)
    feed.prime()
    engine.place_order(
        Params({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    )
    stops = {}
    for working in ("MARK_PRICE", "CONTRACT_PRICE"):
        stops[working] = engine.place_algo(
            Params(
                {
                    "algoType": "CONDITIONAL",
                    "symbol": "BTCUSDT",
                    "side": "SELL",
                    "type": "STOP_MARKET",
                    "triggerPrice": "99000",
                    "quantity": "0.005",
                    "reduceOnly": "true",
                    "workingType": working,
                }
            )
        )["algoId"]

    for _ in range(3):
        feed.step()  # open 100000, its high 100000, then down to the low 98900
    assert engine.last["BTCUSDT"] == Decimal("98900")

    assert engine.algos[stops["CONTRACT_PRICE"]].algo_status == "FINISHED"
    assert engine.algos[stops["MARK_PRICE"]].algo_status == "NEW"
    assert engine.mark["BTCUSDT"] > Decimal("99000")


def test_limit_order_when_crossing_beyond_one_level_then_fills_to_its_price_and_rests(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(market_depth=1000, depth_step_bps=1)  # 0.01 BTC per level, 10 apart

    order = exchange.create_order(BTC, "limit", "buy", 0.05, 100_015)

    trades = exchange.fetch_my_trades(BTC)
    assert [t["price"] for t in trades] == [100_000, 100_010]
    assert exchange.fetch_order(order["id"], BTC)["info"]["status"] == "PARTIALLY_FILLED"
    assert position_amount(exchange, BTC) == Decimal("0.02")


def test_limit_ioc_when_book_short_at_its_price_then_rest_expires(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(market_depth=1000, depth_step_bps=1)

    order = exchange.create_order(BTC, "limit", "buy", 0.05, 100_015, {"timeInForce": "IOC"})

    assert exchange.fetch_order(order["id"], BTC)["info"]["status"] == "EXPIRED"
    assert position_amount(exchange, BTC) == Decimal("0.02")


def test_limit_fok_when_book_short_at_its_price_then_nothing_fills(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_options(market_depth=1000, depth_step_bps=1)

    order = exchange.create_order(BTC, "limit", "buy", 0.05, 100_015, {"timeInForce": "FOK"})

    assert exchange.fetch_order(order["id"], BTC)["info"]["status"] == "EXPIRED"
    assert position_amount(exchange, BTC) == 0
