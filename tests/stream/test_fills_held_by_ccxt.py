"""Fills that arrive together: ccxt keeps a fill that comes while no watch is waiting and hands
it over only with the next one. The stream hands over every fill it has received."""

from __future__ import annotations

import asyncio
import threading
import time

from exchange.client import create_ccxt_client, create_ccxt_stream_client
from exchange.stream import StreamFill, UserDataStream
from paper.testing import PaperControl, PaperExchangeServer
from tests.support.stream import run_in_own_loop

ORDERS = (("BTC/USDT:USDT", 0.01), ("BNB/USDT:USDT", 1))


async def _fills_after_two_orders_at_once(server: PaperExchangeServer) -> list[tuple[str, str]]:
    rest = create_ccxt_client(
        api_key=server.api_key, api_secret=server.api_secret, base_url=server.url
    )
    rest.enableRateLimit = False
    stream = UserDataStream(
        lambda: create_ccxt_stream_client(
            api_key=server.api_key,
            api_secret=server.api_secret,
            base_url=server.url,
            stream_url=server.stream_url,
        )
    )
    got: list[tuple[str, str]] = []
    try:
        await stream.open()
        senders = [
            threading.Thread(target=rest.create_order, args=(symbol, "market", "buy", qty))
            for symbol, qty in ORDERS
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        # Nothing else happens on the account: a held fill would wait here for good.
        deadline = time.monotonic() + 3
        while len(got) < len(ORDERS) and time.monotonic() < deadline:
            try:
                events = await asyncio.wait_for(stream.next_events(), deadline - time.monotonic())
            except TimeoutError:
                break
            got += [(e.symbol, e.fill.trade_id) for e in events if isinstance(e, StreamFill)]
        # Asked again, nothing is handed over twice.
        try:
            again = await asyncio.wait_for(stream.next_events(), 0.3)
        except TimeoutError:
            again = []
        got += [(e.symbol, e.fill.trade_id) for e in again if isinstance(e, StreamFill)]
    finally:
        await stream.close()
    return got


def test_next_events_when_two_fills_arrive_together_then_both_handed_over_once(
    paper_server: PaperExchangeServer,
) -> None:
    # Arrange: five tries, since whether ccxt holds one back depends on the events' timing
    control = PaperControl(paper_server.url)
    tries = []
    for _ in range(5):
        control.reset()
        control.set_balance("USDT", "100000")
        control.set_price("BTCUSDT", "100000")
        control.set_price("BNBUSDT", "1000")

        # Act
        tries.append(run_in_own_loop(_fills_after_two_orders_at_once(paper_server)))

    # Assert: every try handed over both fills, each once, as the exchange recorded them
    for got in tries:
        assert sorted(symbol for symbol, _ in got) == ["BNBUSDT", "BTCUSDT"], tries
        assert len({trade_id for _, trade_id in got}) == 2
