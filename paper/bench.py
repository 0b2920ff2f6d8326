"""Measure the paper exchange's throughput: ``python -m paper.bench [--seconds N]``.

Runs the in-process server and one keep-alive HTTP client in the same process, so client and
server share one core (and the GIL): the figure is a floor, not a best case. Mix per round:
a public ticker, a signed openOrders, a signed positionRisk, a signed LIMIT order and its cancel.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import time
from urllib.parse import urlencode, urlsplit

from paper.testing import PaperControl, PaperExchangeServer


class _Client:
    def __init__(self, url: str, key: str, secret: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        self.key = key
        self.secret = secret.encode()

    def call(self, method: str, path: str, params: dict[str, str], *, signed: bool) -> object:
        headers = {}
        query = urlencode(params)
        if signed:
            query = urlencode({**params, "timestamp": int(time.time() * 1000)})
            signature = hmac.new(self.secret, query.encode(), hashlib.sha256).hexdigest()
            query += "&signature=" + signature
            headers["X-MBX-APIKEY"] = self.key
        body = None
        if method == "POST":
            body = query
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            target = path
        else:
            target = f"{path}?{query}" if query else path
        self.conn.request(method, target, body=body, headers=headers)
        response = self.conn.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {payload}")
        return payload


def run(seconds: float) -> float:
    """Return requests per second over ``seconds`` of the request mix."""
    with PaperExchangeServer() as server:
        control = PaperControl(server.url)
        control.configure(weight_limit_1m=10**9, orders_10s=10**9, orders_1m=10**9)
        client = _Client(server.url, server.api_key, server.api_secret)
        count = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            client.call("GET", "/fapi/v1/ticker/price", {"symbol": "BTCUSDT"}, signed=False)
            client.call("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}, signed=True)
            client.call("GET", "/fapi/v3/positionRisk", {}, signed=True)
            order = client.call(
                "POST",
                "/fapi/v1/order",
                {
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "timeInForce": "GTC",
                    "quantity": "0.001",
                    "price": "99000",
                },
                signed=True,
            )
            assert isinstance(order, dict)
            client.call(
                "DELETE",
                "/fapi/v1/order",
                {"symbol": "BTCUSDT", "orderId": str(order["orderId"])},
                signed=True,
            )
            count += 5
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m paper.bench")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rate = run(args.seconds)
    print(f"paper exchange: {rate:.0f} requests/second (one process, one core, target >= 500)")


if __name__ == "__main__":
    main()
