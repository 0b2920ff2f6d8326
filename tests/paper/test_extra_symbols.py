"""Synthetic extra symbols: ``SYN001USDT``... cloned from ADAUSDT, listed only when asked for.

Each test starts its own exchange (the symbol list is one per process; stopping the server puts
the previous list back, so the session's six-symbol exchange is unaffected afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pytest

from paper.symbols import symbols
from paper.testing import PaperControl, PaperExchangeServer
from tests.support.paper import binance_code, make_client

SYN1 = "SYN001/USDT:USDT"
ADA = "ADA/USDT:USDT"


@pytest.fixture
def extra_server() -> Iterator[PaperExchangeServer]:
    with PaperExchangeServer(port=0, feed="static", extra_symbols=3) as server:
        yield server


@pytest.fixture
def extra_exchange(extra_server: PaperExchangeServer) -> ccxt.binanceusdm:
    client = make_client(extra_server)
    client.load_markets()
    return client


def _filters(market: dict) -> dict[str, dict]:
    return {f["filterType"]: f for f in market["info"]["filters"]}


def test_load_markets_when_extra_symbols_then_synthetic_markets_listed_with_template_filters(
    extra_exchange: ccxt.binanceusdm,
) -> None:
    markets = extra_exchange.markets

    synthetic = sorted(m["id"] for m in markets.values() if m["id"].startswith("SYN"))
    assert synthetic == ["SYN001USDT", "SYN002USDT", "SYN003USDT"]
    assert len(markets) == 9
    assert markets[SYN1]["base"] == "SYN001"
    assert markets[SYN1]["info"]["underlyingSubType"] == ["Synthetic"]
    assert _filters(markets[SYN1]) == _filters(markets[ADA])


def test_fetch_leverage_brackets_when_extra_symbols_then_template_brackets(
    extra_exchange: ccxt.binanceusdm,
) -> None:
    rows = extra_exchange.fapiPrivateGetLeverageBracket()
    by_symbol = {row["symbol"]: row["brackets"] for row in rows}

    assert by_symbol["SYN003USDT"] == by_symbol["ADAUSDT"]


def test_create_order_when_synthetic_symbol_then_filled_under_template_filters(
    extra_server: PaperExchangeServer, extra_exchange: ccxt.binanceusdm
) -> None:
    control = PaperControl(extra_server.url)
    control.set_price("SYN001USDT", "0.9090")

    order = extra_exchange.create_order(SYN1, "market", "buy", 10)
    with pytest.raises(ccxt.ExchangeError) as caught:
        extra_exchange.create_order(SYN1, "market", "buy", 1)  # 0.909 USDT: under minNotional 5

    assert order["status"] == "closed"
    assert binance_code(caught.value) == -4164
    assert [(p["symbol"], p["positionAmt"]) for p in control.positions()] == [("SYN001USDT", "10")]
    assert control.stats()["orders_accepted"] == 1


def test_fetch_ohlcv_when_synthetic_symbol_then_history_scaled_to_its_start_price(
    extra_exchange: ccxt.binanceusdm,
) -> None:
    ticker = extra_exchange.fetch_ticker(SYN1)
    candles = extra_exchange.fetch_ohlcv(SYN1, "1m", limit=200)

    assert ticker["last"] == 0.909  # ADAUSDT's 0.9, 1 % higher for the first synthetic symbol
    assert len(candles) == 200
    assert candles[-1][4] == 0.909
    for _, o, h, low, c, _v in candles:
        assert low <= min(o, c) <= max(o, c) <= h


def test_start_when_replay_feed_and_extra_symbols_then_synthetic_prices_from_scaled_candles() -> (
    None
):
    with PaperExchangeServer(port=0, feed="replay", speed=1.0, extra_symbols=2) as server:
        client = make_client(server)
        ada = Decimal(str(client.fetch_ticker(ADA)["last"]))
        syn = Decimal(str(client.fetch_ticker("SYN002/USDT:USDT")["last"]))

    # The synthetic copy follows the template's candles at 1.02 times its price (on the tick).
    assert abs(syn - ada * Decimal("1.02")) <= Decimal("0.0001")


def test_start_when_env_sets_extra_symbols_then_listed_and_stop_restores_six(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAPER_EXTRA_SYMBOLS", "2")

    with PaperExchangeServer(port=0, feed="static") as server:
        listed = sorted(make_client(server).fetch_tickers())

    assert "SYN002/USDT:USDT" in listed and len(listed) == 8
    assert len(symbols()) == 6


def test_start_when_no_extra_symbols_then_only_the_six_real_symbols(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PAPER_EXTRA_SYMBOLS", raising=False)

    with PaperExchangeServer(port=0, feed="static") as server:
        tickers = make_client(server).fetch_tickers()

    assert len(tickers) == 6
    assert not [name for name in tickers if name.startswith("SYN")]
