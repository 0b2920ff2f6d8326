"""The paper exchange as a server: the control API refuses browsers and bad numbers, bad
Content-Length is answered without reading, stuck sockets time out, a bad state file is a clear
error, and a soak of malformed requests leaves it serving with its state intact."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from decimal import Decimal
from pathlib import Path

import ccxt
import pytest
import requests
from django.core.management import CommandError, call_command

from paper.state import StateFileError
from paper.testing import PaperControl, PaperExchangeServer
from tests.support.paper import BTC, position_amount, usdt


def _control_post(server: PaperExchangeServer, name: str, body: object, **headers: str):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{server.url}/paper/v1/{name}",
        data=data,
        headers={"Content-Type": "application/json", **headers},
        timeout=5,
    )


def _raw(server: PaperExchangeServer, payload: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; return everything the server answers."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in chunk:
                break
        return b"".join(chunks)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Host": "evil.example:8700"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_control_price_when_request_looks_like_a_browser_then_refused_and_price_unchanged(
    exchange_server: PaperExchangeServer,
    exchange: ccxt.binanceusdm,
    headers: dict[str, str],
) -> None:
    answer = _control_post(exchange_server, "price", {"symbol": "BTCUSDT", "price": "1"}, **headers)

    assert answer.status_code == 403
    assert exchange.fetch_ticker(BTC)["last"] == 100_000


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("balance", {"asset": "USDT", "amount": "NaN"}),
        ("balance", {"asset": "USDT", "amount": "-5"}),
        ("balance", {"asset": "USDT", "amount": "Infinity"}),
        ("balance", {"asset": "USDT", "amount": True}),
        ("balance", {"asset": "DOGE", "amount": "5"}),
        ("price", {"symbol": "BTCUSDT", "price": "nan"}),
        ("price", {"symbol": "BTCUSDT", "price": "0"}),
        ("price", {"symbol": "BTCUSDT", "price": "1e999999"}),
        ("price", {"symbol": "BTCUSDT", "price": "100", "mark_price": "-1"}),
        ("funding", {"symbol": "BTCUSDT", "rate": "sNaN"}),
        ("advance", {"seconds": "-1"}),
        ("config", {"slippage": "NaN"}),
        ("config", {"orders_10s": -3}),
        ("options", {"stop_spread_bps": "Infinity"}),
        ("options", {"exit_on_flat": "maybe"}),
    ],
)
def test_control_when_amount_not_finite_or_negative_then_400_and_state_unchanged(
    exchange_server: PaperExchangeServer,
    exchange: ccxt.binanceusdm,
    control: PaperControl,
    name: str,
    body: dict[str, object],
) -> None:
    before = exchange_server.exchange.engine.to_state()  # type: ignore[union-attr]

    answer = _control_post(exchange_server, name, body)

    assert answer.status_code == 400
    assert "error" in answer.json()
    assert exchange_server.exchange.engine.to_state() == before  # type: ignore[union-attr]
    assert control.set_options() == control.set_options()  # still answering


def test_control_when_json_carries_a_nan_literal_then_400(
    exchange_server: PaperExchangeServer, exchange: ccxt.binanceusdm
) -> None:
    answer = _control_post(exchange_server, "balance", b'{"asset": "USDT", "amount": NaN}')

    assert answer.status_code == 400
    assert usdt(exchange) == 10_000


@pytest.mark.parametrize(
    ("length_header", "status"),
    [
        ("", b"400"),
        ("Content-Length: -5\r\n", b"400"),
        ("Content-Length: abc\r\n", b"400"),
        ("Content-Length: 99999999999\r\n", b"413"),
        ("Content-Length: 1048576\r\n", b"413"),
    ],
)
def test_request_when_content_length_bad_then_answered_without_reading_body(
    exchange_server: PaperExchangeServer,
    control: PaperControl,
    length_header: str,
    status: bytes,
) -> None:
    request = (
        "POST /paper/v1/balance HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{length_header}\r\n"
    ).encode()

    started = time.monotonic()
    answer = _raw(exchange_server, request)  # no body follows: a read would hang

    assert answer.split(b" ")[1] == status
    assert time.monotonic() - started < 4
    assert control.stats()["orders_accepted"] == 0


def test_connection_when_client_goes_silent_mid_request_then_closed_by_timeout() -> None:
    with PaperExchangeServer() as server:
        server.exchange.httpd.socket_timeout = 0.5  # type: ignore[union-attr]
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /fapi/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line

            started = time.monotonic()
            closed = sock.recv(1024)

        assert closed == b""
        assert time.monotonic() - started < 5
        assert requests.get(f"{server.url}/fapi/v1/ping", timeout=5).status_code == 200


def test_start_when_state_file_malformed_then_clear_error_and_file_kept(tmp_path: Path) -> None:
    state = tmp_path / "paper.json"
    state.write_text('{"wallet": {"USDT": "10000"')  # cut short

    with pytest.raises(StateFileError, match="not a readable paper exchange state file"):
        PaperExchangeServer().start(port=0, state_file=state)

    assert state.read_text() == '{"wallet": {"USDT": "10000"'


def test_start_when_state_file_has_wrong_shape_then_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "paper.json"
    state.write_text('{"wallet": {"USDT": "NaN"}}')

    with pytest.raises(StateFileError, match="move it away"):
        PaperExchangeServer().start(port=0, state_file=state)


_GARBAGE = [
    b"GARBAGE\r\n\r\n",
    b"POST /paper/v1/balance HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /paper/v1/price HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 10\r\n\r\n{not json}",
    b"POST /paper/v1/balance HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 29\r\n\r\n{"amount": NaN, "asset": 1}\r\n',
    b"POST /paper/v1/reset HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    b"POST /paper/v1/price HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /fapi/v1/order HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n\r\n"
    b"symbol=BTCUSDT&side=BUY&type=MARKET&q=1",
    b"POST /fapi/v1/order?symbol=BTCUSDT&symbol=ETHUSDT HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"POST /fapi/v1/batchOrders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20\r\n\r\n"
    b"batchOrders=[{{{{{{{",
    b"DELETE /fapi/v1/order HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n%%%%%",
    b"PUT /fapi/v1/order HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\n\xff\xfe\x00",
    b"GET /fapi/v1/ticker/24hr?symbol=" + b"A" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /paper/v1/options HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 24\r\n\r\n{"market_depth": "-1e9"}',
    b"POST /paper/v1/balance HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 500\r\n\r\n{",  # the body never completes
]


def test_soak_when_malformed_requests_hammer_control_and_orders_then_serving_and_intact(
    exchange_server: PaperExchangeServer, exchange: ccxt.binanceusdm, control: PaperControl
) -> None:
    exchange_server.exchange.httpd.socket_timeout = 1.0  # type: ignore[union-attr]
    exchange.create_order(BTC, "market", "buy", 0.01)
    exchange.create_order(BTC, "limit", "buy", 0.01, 99_000)
    engine = exchange_server.exchange.engine  # type: ignore[union-attr]
    before = engine.to_state()
    deadline = time.monotonic() + 8
    sent = [0]
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < deadline:
                payload = rng.choice(_GARBAGE)
                if rng.random() < 0.2:
                    payload = payload[: rng.randrange(1, len(payload))]
                _raw(exchange_server, payload, timeout=2)
                sent[0] += 1
        except OSError:
            pass  # a connection the server closed on us is an answer too
        except BaseException as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        exchange_server.exchange.httpd.socket_timeout = 30.0  # type: ignore[union-attr]

    assert not errors
    assert sent[0] > 50
    assert engine.to_state() == before
    assert position_amount(exchange, BTC) == Decimal("0.01")
    assert len(exchange.fetch_open_orders(BTC)) == 1
    assert exchange.fetch_ticker(BTC)["last"] == 100_000
    assert usdt(exchange) == Decimal("9999.5")


def test_command_when_state_file_malformed_then_command_error_names_the_file(
    tmp_path: Path,
) -> None:
    state = tmp_path / "paper.json"
    state.write_text("[1, 2")

    with pytest.raises(CommandError, match=r"paper\.json is not a readable paper exchange state"):
        call_command("paper_exchange", "--port", "0", "--state", str(state))


def test_command_when_option_value_unknown_then_command_error_lists_the_choices() -> None:
    with pytest.raises(CommandError, match="exit_on_flat must be one of keep, expire"):
        call_command("paper_exchange", "--port", "0", "--option", "exit_on_flat=maybe")
