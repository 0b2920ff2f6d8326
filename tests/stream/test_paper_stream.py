"""The paper exchange's user data stream, as a client sees it: listen keys over REST, events in
Binance's shapes on both paths, and the faults (drop, delay, loss, expiry, lifetime)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import pytest

from exchange.client import create_ccxt_client, create_ccxt_stream_client
from paper.testing import PaperExchangeServer
from tests.support.stream import run_in_own_loop

BTC = "BTC/USDT:USDT"


def _listen_key(client: ccxt.binanceusdm) -> str:
    return client.fapiPrivatePostListenKey()["listenKey"]


class RawStream:
    """A plain WebSocket client on ``/ws/<listenKey>``, collecting every event."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.closed = False

    async def run(self, ready: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            ready.set()
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.events.append({**json.loads(message.data), "_at": time.monotonic()})
        self.closed = True

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["e"] == kind]


async def _collect(url: str, act, until, timeout: float = 3.0) -> RawStream:
    """Connect, run ``act`` (blocking, in a thread), then wait until ``until(stream)``."""
    stream = RawStream(url)
    ready = asyncio.Event()
    task = asyncio.ensure_future(stream.run(ready))
    await asyncio.wait_for(ready.wait(), 5)
    await asyncio.to_thread(act)
    deadline = time.monotonic() + timeout
    while not until(stream):
        if time.monotonic() > deadline:
            task.cancel()
            raise AssertionError(f"timed out; events so far: {[e['e'] for e in stream.events]}")
        await asyncio.sleep(0.005)
    task.cancel()
    return stream


def _ws_url(server: PaperExchangeServer, key: str) -> str:
    return f"{server.stream_url}/{key}"


def test_listen_key_when_created_twice_then_same_key_and_put_after_delete_refused(stream_exchange):
    # Arrange
    _, client = stream_exchange

    # Act
    first = _listen_key(client)
    second = _listen_key(client)
    kept = client.fapiPrivatePutListenKey()
    client.fapiPrivateDeleteListenKey()

    # Assert
    assert first == second and kept["listenKey"] == first
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"]
    with pytest.raises(ccxt.BaseError, match="-1125"):
        client.fapiPrivatePutListenKey()


def test_listen_key_when_api_key_wrong_then_refused(paper_server):
    client = create_ccxt_client(api_key="wrong", api_secret="x", base_url=paper_server.url)

    with pytest.raises(ccxt.BaseError, match="-2015"):
        client.fapiPrivatePostListenKey()


def test_stream_when_key_unknown_then_connection_refused(stream_exchange, paper_server):
    async def connect() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(_ws_url(paper_server, "nope")):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    assert run_in_own_loop(connect()) == 400


def test_stream_when_stop_fires_then_algo_order_trade_and_account_events_in_binance_shapes(
    stream_exchange, paper_server
):
    # Arrange: a long with a closePosition stop.
    control, client = stream_exchange
    key = _listen_key(client)
    control.set_price("BTCUSDT", "100000")
    client.create_order(BTC, "market", "buy", 0.01)
    client.fapiPrivatePostAlgoOrder(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": "99000",
            "closePosition": "true",
            "workingType": "MARK_PRICE",
            "clientAlgoId": "sl-1",
        }
    )

    # Act
    stream = run_in_own_loop(
        _collect(
            _ws_url(paper_server, key),
            lambda: control.set_price("BTCUSDT", "98900"),
            lambda s: any(e["o"]["X"] == "FINISHED" for e in s.of("ALGO_UPDATE")),
        )
    )

    # Assert: triggered, with the order it became; that order's fill; finished.
    algos = [e["o"] for e in stream.of("ALGO_UPDATE")]
    assert [a["X"] for a in algos] == ["TRIGGERED", "FINISHED"]
    child = algos[0]["ai"]
    assert child and algos[1]["ai"] == child
    assert algos[1]["ap"].startswith("98900") and algos[1]["aq"] == "0.010"
    orders = [e["o"] for e in stream.of("ORDER_TRADE_UPDATE")]
    assert [(o["x"], o["X"]) for o in orders] == [("NEW", "NEW"), ("TRADE", "FILLED")]
    trade = orders[1]
    assert str(trade["i"]) == child and trade["c"] == "sl-1" and trade["ot"] == "STOP_MARKET"
    fills = client.fapiPrivateGetUserTrades({"symbol": "BTCUSDT", "orderId": child})
    assert trade["t"] == fills[0]["id"]
    assert Decimal(trade["L"]) == Decimal("98900") and trade["l"] == "0.010"
    assert Decimal(trade["n"]) == Decimal(fills[0]["commission"]) and trade["N"] == "USDT"
    assert Decimal(trade["rp"]) == Decimal(fills[0]["realizedPnl"]) == Decimal("-11")
    account = stream.of("ACCOUNT_UPDATE")[0]["a"]
    assert account["m"] == "ORDER"
    assert account["P"][0]["s"] == "BTCUSDT" and Decimal(account["P"][0]["pa"]) == 0
    balance = client.fapiPrivateV2GetBalance()[0]["balance"]
    assert Decimal(account["B"][0]["wb"]) == Decimal(balance)


def test_stream_when_algo_order_placed_and_cancelled_then_new_and_canceled_algo_updates(
    stream_exchange, paper_server
):
    control, client = stream_exchange
    key = _listen_key(client)
    control.set_price("BTCUSDT", "100000")
    params = {
        "algoType": "CONDITIONAL",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "TAKE_PROFIT_MARKET",
        "triggerPrice": "101000",
        "quantity": "0.01",
        "reduceOnly": "false",
        "clientAlgoId": "tp-1",
    }

    def act() -> None:
        client.fapiPrivatePostAlgoOrder(params)
        client.fapiPrivateDeleteAlgoOrder({"symbol": "BTCUSDT", "clientAlgoId": "tp-1"})

    stream = run_in_own_loop(
        _collect(_ws_url(paper_server, key), act, lambda s: len(s.of("ALGO_UPDATE")) == 2)
    )

    algos = [e["o"] for e in stream.of("ALGO_UPDATE")]
    assert [(a["caid"], a["X"], a["o"], a["tp"]) for a in algos] == [
        ("tp-1", "NEW", "TAKE_PROFIT_MARKET", "101000.00"),
        ("tp-1", "CANCELED", "TAKE_PROFIT_MARKET", "101000.00"),
    ]


def test_stream_when_deposit_and_funding_then_account_updates_with_their_reasons(
    stream_exchange, paper_server
):
    control, client = stream_exchange
    key = _listen_key(client)
    client.create_order(BTC, "market", "buy", 0.01)

    def act() -> None:
        control.set_balance("USDT", "20000")
        control.set_funding_rate("BTCUSDT", "0.001")
        control.advance(8 * 3600)

    stream = run_in_own_loop(
        _collect(
            _ws_url(paper_server, key),
            act,
            lambda s: any(e["a"]["m"] == "FUNDING_FEE" for e in s.of("ACCOUNT_UPDATE")),
        )
    )

    reasons = [e["a"]["m"] for e in stream.of("ACCOUNT_UPDATE")]
    assert reasons[0] == "DEPOSIT" and "FUNDING_FEE" in reasons


def test_stream_when_cross_margin_nearly_spent_then_margin_call(stream_exchange, paper_server):
    control, client = stream_exchange
    key = _listen_key(client)
    control.set_balance("USDT", "60")
    control.set_price("BTCUSDT", "100000")
    client.fapiPrivatePostLeverage({"symbol": "BTCUSDT", "leverage": 100})
    client.create_order(BTC, "market", "buy", 0.05)

    stream = run_in_own_loop(
        _collect(
            _ws_url(paper_server, key),
            lambda: control.set_price("BTCUSDT", "99300"),
            lambda s: bool(s.of("MARGIN_CALL")),
        )
    )

    call = stream.of("MARGIN_CALL")[0]
    assert call["p"][0]["s"] == "BTCUSDT" and call["p"][0]["mt"] == "CROSSED"
    assert Decimal(call["p"][0]["mm"]) > 0 and "cw" in call


def test_stream_when_events_delayed_then_they_arrive_after_the_delay_in_order(
    stream_exchange, paper_server
):
    control, client = stream_exchange
    key = _listen_key(client)
    control.stream(delay_seconds=0.4)
    sent = []

    def act() -> None:
        sent.append(time.monotonic())
        client.create_order(BTC, "market", "buy", 0.01)

    stream = run_in_own_loop(
        _collect(_ws_url(paper_server, key), act, lambda s: len(s.of("ORDER_TRADE_UPDATE")) == 2)
    )

    first = stream.events[0]
    assert first["_at"] - sent[0] >= 0.4
    assert [e["o"]["x"] for e in stream.of("ORDER_TRADE_UPDATE")] == ["NEW", "TRADE"]


def test_stream_when_events_lost_then_those_never_arrive_and_later_ones_do(
    stream_exchange, paper_server
):
    control, client = stream_exchange
    key = _listen_key(client)
    control.stream(lose=3)  # the order's NEW, the account update and the trade of the first

    def act() -> None:
        client.create_order(BTC, "market", "buy", 0.01)
        client.create_order(BTC, "market", "sell", 0.01)

    stream = run_in_own_loop(
        _collect(_ws_url(paper_server, key), act, lambda s: len(s.of("ORDER_TRADE_UPDATE")) == 2)
    )

    sides = [(e["o"]["S"], e["o"]["x"]) for e in stream.of("ORDER_TRADE_UPDATE")]
    assert sides == [("SELL", "NEW"), ("SELL", "TRADE")]
    assert control.stream()["events_lost"] == 3


def test_stream_when_key_expires_then_listen_key_expired_event_and_connection_closed(
    stream_exchange, paper_server
):
    control, client = stream_exchange
    key = _listen_key(client)

    stream = run_in_own_loop(
        _collect(
            _ws_url(paper_server, key), lambda: control.stream(action="expire"), lambda s: s.closed
        )
    )

    assert [(e["e"], e["listenKey"]) for e in stream.events] == [("listenKeyExpired", key)]
    with pytest.raises(ccxt.BaseError, match="-1125"):
        client.fapiPrivatePutListenKey()
    assert _listen_key(client) != key


def test_stream_when_connection_dropped_or_past_lifetime_then_closed(stream_exchange, paper_server):
    control, client = stream_exchange
    key = _listen_key(client)

    dropped = run_in_own_loop(
        _collect(
            _ws_url(paper_server, key), lambda: control.stream(action="drop"), lambda s: s.closed
        )
    )
    control.stream(max_connection_seconds=0.3)
    started = time.monotonic()
    aged = run_in_own_loop(_collect(_ws_url(paper_server, key), lambda: None, lambda s: s.closed))

    assert dropped.closed and aged.closed
    assert time.monotonic() - started >= 0.3
    assert control.stream()["closed_by_lifetime"] >= 1


def test_ccxt_stream_client_when_order_fills_then_parsed_trade_and_order_on_private_ws(
    stream_exchange, paper_server
):
    # ccxt's own client, on the path it uses (/private/ws?listenKey=).
    control, client = stream_exchange

    async def run() -> tuple[list, list]:
        pro = create_ccxt_stream_client(
            api_key=paper_server.api_key,
            api_secret=paper_server.api_secret,
            base_url=paper_server.url,
            stream_url=paper_server.stream_url,
        )
        try:
            trades = asyncio.ensure_future(pro.watch_my_trades())
            orders = asyncio.ensure_future(pro.watch_orders())
            await asyncio.sleep(0.3)
            await asyncio.to_thread(client.create_order, BTC, "market", "buy", 0.01)
            return await asyncio.wait_for(trades, 5), await asyncio.wait_for(orders, 5)
        finally:
            await pro.close()

    trades, orders = run_in_own_loop(run())

    assert trades[0]["symbol"] == BTC and trades[0]["amount"] == 0.01
    assert trades[0]["fee"]["currency"] == "USDT" and trades[0]["fee"]["cost"] == 0.5
    assert orders[-1]["status"] in ("open", "closed")
    assert control.stream()["connections_total"] >= 1
