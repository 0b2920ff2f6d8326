"""Market data: tickers, klines, mark price and funding, server time."""

from __future__ import annotations

import itertools
from decimal import Decimal

import ccxt

from paper.testing import PaperControl
from tests.support.paper import BNB, BTC


def test_fetch_ticker_when_price_set_then_last_price_follows(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_price("BNBUSDT", "970.5")

    ticker = exchange.fetch_ticker(BNB)

    assert ticker["last"] == 970.5
    assert ticker["info"]["lastPrice"] == "970.500"


def test_fetch_tickers_when_all_symbols_then_six_markets(exchange: ccxt.binanceusdm) -> None:
    tickers = exchange.fetch_tickers()

    assert len(tickers) == 6
    assert tickers[BTC]["last"] == 100_000


def test_fetch_ohlcv_when_static_feed_then_history_ends_at_current_price_on_tick(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_price("BTCUSDT", "100100")

    candles = exchange.fetch_ohlcv(BTC, "1m", limit=300)

    assert len(candles) == 300
    assert candles[-1][4] == 100_100
    assert all(c[0] < d[0] for c, d in itertools.pairwise(candles))
    for _, o, h, low, c, _v in candles:
        assert low <= min(o, c) <= max(o, c) <= h
        assert (Decimal(str(c)) / Decimal("0.1")) % 1 == 0


def test_fetch_ohlcv_when_hourly_then_aggregated_from_minutes(
    exchange: ccxt.binanceusdm,
) -> None:
    hours = exchange.fetch_ohlcv(BTC, "1h", limit=5)

    assert len(hours) == 5
    assert all(h[0] % 3_600_000 == 0 for h in hours)


def test_fetch_mark_price_when_price_set_then_premium_index_follows(
    exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    control.set_price("BTCUSDT", "99000")

    funding = exchange.fetch_funding_rate(BTC)

    assert funding["markPrice"] == 99_000
    assert funding["fundingRate"] == 0.0001


def test_fetch_time_when_asked_then_server_time_close_to_ours(
    exchange: ccxt.binanceusdm,
) -> None:
    assert abs(exchange.fetch_time() - exchange.milliseconds()) < 5_000
