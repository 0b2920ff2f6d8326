"""Fixtures of the user data stream tests: the stream process run in a thread of the test, on
the paper exchange's own stream, through ccxt's WebSocket client. The guard's world
(``btc_market``, ``btc``, ``unthrottled_gateway``, ``guard``) is in
``tests.support.plugins.markets``; the helpers are in ``tests.support.stream``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import ccxt
import pytest

from exchange.client import create_ccxt_client
from exchange.stream import user_data_stream_factory
from paper.testing import PaperControl, PaperExchangeServer
from tests.support.exchange import fast_gateway
from tests.support.stream import RunningStream
from trading.stream_runner import StreamRunner, StreamSettings


@pytest.fixture
def stream_paper(paper: object, paper_server: object, settings: object) -> object:
    """The paper exchange with its stream back to normal, and the settings pointed at it."""
    settings.PAPER_STREAM_URL = paper_server.stream_url
    paper.stream(
        lose=0,
        delay_seconds=0,
        listen_key_validity_seconds=3600,
        max_connection_seconds=86400,
        action="drop",
    )
    return paper


@pytest.fixture
def start_stream(stream_paper: object) -> Iterator[Callable[..., RunningStream]]:
    """Start the stream process's runner in a thread; stopped at the end of the test."""
    started: list[RunningStream] = []

    def start(**settings: float) -> RunningStream:
        keep_alive = settings.pop("keep_alive_seconds", 60.0)
        runner = StreamRunner(
            stream_factory=user_data_stream_factory(keep_alive_seconds=keep_alive),
            gateway_factory=fast_gateway,
            settings=StreamSettings(
                **{"report_seconds": 0.2, "reconcile_seconds": 3600, "backoff_initial": 0.05}
                | settings
            ),
        )
        loop = asyncio.new_event_loop()
        stop_event = asyncio.Event()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_until_complete(runner.run(stop_event))
            loop.close()

        thread = threading.Thread(target=run, name="test-stream", daemon=True)
        thread.start()
        ready.wait(5)
        running = RunningStream(runner, loop, stop_event, thread)
        started.append(running)
        running.wait_connected()
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


@pytest.fixture
def stream_exchange(
    paper_server: PaperExchangeServer,
) -> Iterator[tuple[PaperControl, ccxt.binanceusdm]]:
    """A reset paper exchange with no stream connection, and a REST client on it."""
    control = PaperControl(paper_server.url)
    control.reset()
    control.stream(action="drop")
    client = create_ccxt_client(
        api_key=paper_server.api_key, api_secret=paper_server.api_secret, base_url=paper_server.url
    )
    client.enableRateLimit = False
    yield control, client
