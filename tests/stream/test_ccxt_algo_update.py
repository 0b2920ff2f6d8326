"""The paper exchange's ``ALGO_UPDATE`` as ccxt's own WebSocket client (ccxt.pro binanceusdm, the
one the stream process uses) receives it: a stop that triggers arrives as a conditional order
triggered, then finished, naming the market order it became, whose fill follows."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from exchange.client import create_ccxt_stream_client
from tests.support.stream import run_in_own_loop

BTC = "BTC/USDT:USDT"


async def _until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _finished_and_filled(messages: list[dict[str, Any]]) -> bool:
    """The conditional order finished and the order it became filled (its own event may come
    before or after the algo's)."""
    finished = [m["o"] for m in messages if m["e"] == "ALGO_UPDATE" and m["o"]["X"] == "FINISHED"]
    if not finished:
        return False
    child_id = int(finished[-1]["ai"])
    return any(
        m["e"] == "ORDER_TRADE_UPDATE" and m["o"]["i"] == child_id and m["o"]["X"] == "FILLED"
        for m in messages
    )


def test_ccxt_stream_client_when_stop_triggers_then_algo_update_triggered_and_finished_received(
    stream_exchange, paper_server
):
    # Arrange: a long protected by a closePosition stop at 99000.
    control, client = stream_exchange
    control.set_price("BTCUSDT", "100000")
    client.create_order(BTC, "market", "buy", 0.01)
    placed = client.fapiPrivatePostAlgoOrder(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": "99000",
            "closePosition": "true",
            "workingType": "MARK_PRICE",
            "clientAlgoId": "sl-ccxt-1",
        }
    )
    algo_id = str(placed["algoId"])
    connections_before = control.stream()["connections_total"]

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        pro = create_ccxt_stream_client(
            api_key=paper_server.api_key,
            api_secret=paper_server.api_secret,
            base_url=paper_server.url,
            stream_url=paper_server.stream_url,
        )
        # Every order event ccxt's client dispatched, as it came. Waiting on watch_orders alone
        # would not do: a message handled while nobody awaits resolves nothing (ccxt keeps it
        # in its cache for the next message), and its cache keeps one entry per order id,
        # updated in place, so a triggered-then-finished order shows only its last state.
        dispatched: list[dict[str, Any]] = []
        handle_order_update = pro.handle_order_update

        def spy(client: Any, message: dict[str, Any]) -> None:
            dispatched.append(copy.deepcopy(message))
            handle_order_update(client, message)

        pro.handle_order_update = spy
        try:
            watching = asyncio.ensure_future(pro.watch_orders())
            await _until(
                lambda: control.stream()["connections_total"] > connections_before,
                "ccxt to connect",
            )
            await _until(lambda: control.stream()["connections"] >= 1, "the connection to open")

            # Act: the mark crosses the stop.
            await asyncio.to_thread(control.set_price, "BTCUSDT", "98900")

            await _until(lambda: _finished_and_filled(dispatched), "the stop's events")
            first = copy.deepcopy(await asyncio.wait_for(watching, 5))
            parsed = copy.deepcopy(list(pro.orders))  # ccxt's parsed orders, latest state each
        finally:
            await pro.close()
        return dispatched, first, parsed

    dispatched, first, parsed = run_in_own_loop(run())

    # Assert: ccxt received both ALGO_UPDATEs, triggered then finished, and parsed them as the
    # conditional order; watch_orders resolved with it.
    algo_events = [m["o"] for m in dispatched if m["e"] == "ALGO_UPDATE"]
    assert [(a["aid"], a["X"]) for a in algo_events] == [
        (placed["algoId"], "TRIGGERED"),
        (placed["algoId"], "FINISHED"),
    ]
    assert any(o["id"] == algo_id for o in first)
    finished = next(o for o in parsed if o["id"] == algo_id)
    assert finished["info"]["X"] == "FINISHED" and finished["status"] == "closed"
    assert finished["clientOrderId"] == "sl-ccxt-1"
    assert finished["symbol"] == BTC and finished["side"] == "sell"
    assert Decimal(str(finished["triggerPrice"])) == Decimal("99000")
    assert finished["info"]["cp"] is True
    child_id = finished["info"]["ai"]
    assert child_id and algo_events[0]["ai"] == child_id
    assert Decimal(finished["info"]["aq"]) == Decimal("0.01")
    # The market order it became, by its ORDER_TRADE_UPDATE: filled.
    child = next(o for o in parsed if o["id"] == child_id)
    assert child["status"] == "closed" and child["filled"] == 0.01
    # On the exchange: that order's fill, and the position flat.
    trades = client.fapiPrivateGetUserTrades({"symbol": "BTCUSDT", "orderId": child_id})
    assert len(trades) == 1 and Decimal(trades[0]["qty"]) == Decimal("0.01")
    assert all(Decimal(p["positionAmt"]) == 0 for p in control.positions())
