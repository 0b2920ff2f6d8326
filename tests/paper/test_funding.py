"""Funding: charged every 8 hours of exchange time at the published rate, as FUNDING_FEE income."""

from __future__ import annotations

from decimal import Decimal

import ccxt

from paper.candles import MINUTE_MS, Candle
from paper.engine import Engine
from paper.feed import ReplayFeed
from paper.market import Market
from paper.params import Params
from paper.testing import PaperControl
from tests.support.paper import BTC, DOGE, usdt

EIGHT_HOURS = 8 * 3600


def _funding_rows(exchange: ccxt.binanceusdm) -> list[dict[str, str]]:
    return exchange.fapiPrivateGetIncome({"incomeType": "FUNDING_FEE"})


def test_funding_when_eight_hours_pass_with_long_then_it_pays_mark_notional_times_rate(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    control.set_price("BTCUSDT", "100000", mark_price="101000")
    control.set_funding_rate("BTCUSDT", "0.0003")
    before = usdt(exchange)

    control.advance(EIGHT_HOURS)

    rows = _funding_rows(exchange)
    assert [(r["symbol"], r["income"]) for r in rows] == [("BTCUSDT", "-0.30300000")]
    assert usdt(exchange) == before - Decimal("0.303")


def test_funding_when_rate_positive_and_short_then_short_receives(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(DOGE, "market", "sell", 1000)  # 350 USDT at 0.35
    before = usdt(exchange)

    control.advance(EIGHT_HOURS)

    assert [r["income"] for r in _funding_rows(exchange)] == ["0.03500000"]
    assert usdt(exchange) == before + Decimal("0.035")


def test_funding_when_less_than_interval_passes_then_nothing_charged_yet(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange.create_order(BTC, "market", "buy", 0.01)
    next_time = exchange.fetch_funding_rate(BTC)["fundingTimestamp"]
    now = control.advance(0)

    control.advance((next_time - now) // 1000 - 5)

    assert _funding_rows(exchange) == []
    control.advance(10)
    assert len(_funding_rows(exchange)) == 1


def test_funding_when_flat_then_no_fee_but_rate_published(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_funding_rate("BTCUSDT", "-0.0002")
    history_before = exchange.fetch_funding_rate_history(BTC)

    control.advance(2 * EIGHT_HOURS)

    history = exchange.fetch_funding_rate_history(BTC)
    assert _funding_rows(exchange) == []
    assert [h["fundingRate"] for h in history[-2:]] == [-0.0002, -0.0002]
    assert history[-1]["timestamp"] - history[-2]["timestamp"] == EIGHT_HOURS * 1000
    assert history[-3]["timestamp"] == history_before[-1]["timestamp"]


def test_fetch_funding_rate_history_when_since_given_then_oldest_first_from_there(
    exchange: ccxt.binanceusdm,
) -> None:
    latest = exchange.fetch_funding_rate_history(BTC)
    since = latest[-5]["timestamp"]

    rows = exchange.fetch_funding_rate_history(BTC, since, 3)

    assert [r["timestamp"] for r in rows] == [r["timestamp"] for r in latest[-5:-2]]
    assert all(r["symbol"] == BTC and r["fundingRate"] == 0.0001 for r in rows)
    assert all(r["timestamp"] % (EIGHT_HOURS * 1000) == 0 for r in rows)


def test_fetch_ledger_when_funding_charged_then_sum_still_equals_wallet_change(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    start = usdt(exchange)
    exchange.create_order(BTC, "market", "buy", 0.013)
    control.set_price("BTCUSDT", "100321.7")
    control.advance(EIGHT_HOURS)
    exchange.create_order(BTC, "market", "sell", 0.013)

    ledger = exchange.fetch_ledger("USDT", None, 1000)

    total = sum(
        (Decimal(e["info"]["income"]) for e in ledger),
        Decimal(0),
    )
    assert "fee" in {e["type"] for e in ledger}  # ccxt's name for FUNDING_FEE
    assert total == usdt(exchange) - start


def test_replay_when_replayed_time_crosses_funding_time_then_funding_charged() -> None:
    engine = Engine()
    start = 3 * EIGHT_HOURS * 1000 - 2 * MINUTE_MS  # two minutes before a funding time
    rows = [_flat_candle(start + i * MINUTE_MS) for i in range(4)]
    feed = ReplayFeed(engine, Market(engine), {"BTCUSDT": rows}, warmup=1)
    feed.prime()
    engine.place_order(
        Params({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    )

    for _ in range(ReplayFeed.POINTS):
        feed.step()  # the minute before the funding time: nothing due
    charged_before = [i for i in engine.incomes if i.income_type == "FUNDING_FEE"]
    feed.step()  # the first point at the funding time

    charged = [i for i in engine.incomes if i.income_type == "FUNDING_FEE"]
    assert charged_before == []
    published = next(f for f in reversed(engine.funding_history) if f.symbol == "BTCUSDT")
    assert published.time == charged[0].time
    assert published.mark_price > 100_000  # the mark (with its basis), not the last price
    expected = -(Decimal("0.01") * published.mark_price * published.rate).quantize(Decimal("1e-8"))
    assert [i.income for i in charged] == [expected]


def _flat_candle(open_time: int) -> Candle:
    price = Decimal(100_000)
    return Candle(
        open_time=open_time,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=Decimal(1),
        close_time=open_time + MINUTE_MS - 1,
        quote_volume=price,
        count=1,
        taker_buy_volume=Decimal(0),
        taker_buy_quote_volume=Decimal(0),
    )
