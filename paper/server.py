"""HTTP front of the paper exchange: routing, signing, weights, rate limits and headers.

Requests are checked in Binance's order (API key, timestamp, signature) before they reach the
engine. Every answer carries ``X-MBX-USED-WEIGHT-1M``; order endpoints also carry the order
counters. ``/paper/v1/...`` is the control API (see :mod:`paper.control`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from paper import symbols as symbol_data
from paper.engine import Engine
from paper.errors import AHEAD_OF_SERVER, BinanceError, reject
from paper.faults import Fault, FaultBook
from paper.market import Market
from paper.params import Params
from paper.stream import UserStream

logger = logging.getLogger(__name__)

DEFAULT_API_KEY = "arena-paper-key"
DEFAULT_API_SECRET = "arena-paper-secret"
MAX_RECV_WINDOW = 60_000
ERROR_BODY_500 = {"code": -1000, "msg": "An unknown error occured while processing the request."}

Handler = Callable[["Request"], Any]


@dataclass
class Request:
    """One parsed request as the endpoint handlers see it."""

    method: str
    path: str
    params: Params
    client_ip: str


@dataclass(frozen=True)
class Route:
    """An endpoint: its handler, request weight, whether it is signed, orders it counts."""

    handler: Handler
    weight: Callable[[Params], int]
    signed: bool = True
    orders: int = 0
    # USER_STREAM endpoints: the API key is checked, no timestamp or signature.
    key_only: bool = False


def fixed(weight: int) -> Callable[[Params], int]:
    return lambda p: weight


def by_symbol(with_symbol: int, without: int) -> Callable[[Params], int]:
    return lambda p: with_symbol if "symbol" in p else without


def klines_weight(p: Params) -> int:
    limit = p.integer("limit", 500) or 500
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def depth_weight(p: Params) -> int:
    limit = p.integer("limit", 500) or 500
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


# What Binance's front answers for a path it does not serve: a 404 without a Binance code, so
# a client treats it as a mistake in the request, not as a fault worth retrying.
NOT_FOUND_BODY = b"<html><body><h2>404 Not found</h2></body></html>"


@dataclass
class Limits:
    """Binance's IP weight limit, order-count limits and the 418 ban that follows 429s."""

    weight_1m: int = 2400
    orders_10s: int = 300
    orders_1m: int = 1200
    # Requests a client may still send after a 429 (in the same minute) before it is banned.
    ban_after: int = 3
    ban_seconds: int = 120


@dataclass
class Usage:
    """Counters of one client IP or of the account, per fixed window."""

    minute: int = -1
    weight: int = 0
    strikes: int = 0
    banned_until: float = 0.0
    ten_s: int = -1
    orders_10s: int = 0
    orders_minute: int = -1
    orders_1m: int = 0


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)


class PaperApp:
    """The request pipeline, independent of the socket server so it can be benchmarked."""

    def __init__(
        self,
        engine: Engine,
        market: Market,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        limits: Limits | None = None,
        on_mutation: Callable[[], None] | None = None,
        control_from_anywhere: bool = False,
    ) -> None:
        self.engine = engine
        self.market = market
        self.api_key = api_key
        self.api_secret = api_secret.encode()
        self.limits = limits or Limits()
        self.faults = FaultBook()
        self.stats = Stats()
        self.usage: dict[str, Usage] = {}
        self.account_usage = Usage()
        self.lock = threading.Lock()
        self.on_mutation = on_mutation or (lambda: None)
        self.control_from_anywhere = control_from_anywhere
        self.stopping = threading.Event()
        self.user_stream = UserStream(engine)
        self.routes = self._routes()

    # ------------------------------------------------------------------ routes
    def _routes(self) -> dict[tuple[str, str], Route]:
        e, m = self.engine, self.market
        v1, v2, v3 = "/fapi/v1/", "/fapi/v2/", "/fapi/v3/"
        return {
            ("GET", v1 + "ping"): Route(lambda r: {}, fixed(1), signed=False),
            ("GET", v1 + "time"): Route(lambda r: {"serverTime": _ms()}, fixed(1), signed=False),
            ("GET", v1 + "exchangeInfo"): Route(self._exchange_info, fixed(1), signed=False),
            ("GET", v1 + "klines"): Route(lambda r: m.klines(r.params), klines_weight, False),
            ("GET", v1 + "markPriceKlines"): Route(
                lambda r: m.klines(r.params), klines_weight, False
            ),
            ("GET", v1 + "ticker/24hr"): Route(
                lambda r: m.ticker_24h(r.params), by_symbol(1, 40), False
            ),
            ("GET", v1 + "ticker/price"): Route(
                lambda r: m.ticker_price(r.params), by_symbol(1, 2), False
            ),
            ("GET", v2 + "ticker/price"): Route(
                lambda r: m.ticker_price(r.params), by_symbol(1, 2), False
            ),
            ("GET", v1 + "ticker/bookTicker"): Route(
                lambda r: m.book_ticker(r.params), by_symbol(2, 5), False
            ),
            ("GET", v1 + "premiumIndex"): Route(
                lambda r: m.premium_index(r.params), by_symbol(1, 10), False
            ),
            ("GET", v1 + "leverageBracket"): Route(self._brackets, fixed(1)),
            ("GET", v1 + "commissionRate"): Route(self._commission, fixed(20)),
            ("GET", v1 + "positionSide/dual"): Route(lambda r: e.position_mode(), fixed(30)),
            ("POST", v1 + "positionSide/dual"): Route(
                lambda r: e.set_position_mode(r.params), fixed(1)
            ),
            ("GET", v1 + "feeBurn"): Route(lambda r: e.fee_burn_status(), fixed(30)),
            ("POST", v1 + "feeBurn"): Route(lambda r: e.set_fee_burn(r.params), fixed(1)),
            ("GET", v1 + "accountConfig"): Route(lambda r: e.account_config(), fixed(5)),
            ("GET", v1 + "openOrder"): Route(lambda r: e.open_order(r.params), fixed(1)),
            ("PUT", v1 + "order"): Route(lambda r: e.modify_order(r.params), fixed(1), orders=1),
            ("POST", v1 + "positionMargin"): Route(lambda r: e.position_margin(r.params), fixed(1)),
            ("GET", v1 + "adlQuantile"): Route(lambda r: e.adl_quantile(r.params), fixed(5)),
            ("GET", v1 + "forceOrders"): Route(
                lambda r: e.force_orders(r.params), by_symbol(20, 50)
            ),
            ("GET", v1 + "depth"): Route(lambda r: m.depth(r.params), depth_weight, False),
            ("GET", v1 + "trades"): Route(lambda r: m.trades(r.params), fixed(5), False),
            ("GET", v1 + "aggTrades"): Route(lambda r: m.agg_trades(r.params), fixed(20), False),
            ("GET", v1 + "multiAssetsMargin"): Route(
                lambda r: {"multiAssetsMargin": False}, fixed(30)
            ),
            ("POST", v1 + "multiAssetsMargin"): Route(self._set_multi_assets, fixed(1)),
            ("POST", v1 + "leverage"): Route(lambda r: e.set_leverage(r.params), fixed(1)),
            ("POST", v1 + "marginType"): Route(lambda r: e.set_margin_type(r.params), fixed(1)),
            ("GET", v1 + "symbolConfig"): Route(lambda r: e.symbol_config(r.params), fixed(5)),
            ("GET", v2 + "account"): Route(lambda r: e.account(version=2), fixed(5)),
            ("GET", v3 + "account"): Route(lambda r: e.account(version=3), fixed(5)),
            ("GET", v2 + "balance"): Route(lambda r: e.balance(), fixed(5)),
            ("GET", v3 + "balance"): Route(lambda r: e.balance(), fixed(5)),
            ("GET", v2 + "positionRisk"): Route(
                lambda r: e.position_risk(r.params, version=2), fixed(5)
            ),
            ("GET", v3 + "positionRisk"): Route(
                lambda r: e.position_risk(r.params, version=3), fixed(5)
            ),
            ("POST", v1 + "order"): Route(lambda r: e.place_order(r.params), fixed(0), orders=1),
            ("GET", v1 + "order"): Route(lambda r: e.get_order(r.params), fixed(1)),
            ("DELETE", v1 + "order"): Route(lambda r: e.cancel_order(r.params), fixed(1)),
            # Binance counts a batch as one unit of the order-rate limits, whatever it holds.
            ("POST", v1 + "batchOrders"): Route(self._batch, fixed(5), orders=1),
            ("GET", v1 + "openOrders"): Route(lambda r: e.open_orders(r.params), by_symbol(1, 40)),
            ("GET", v1 + "allOrders"): Route(lambda r: e.all_orders(r.params), fixed(5)),
            ("DELETE", v1 + "allOpenOrders"): Route(lambda r: e.cancel_all(r.params), fixed(1)),
            ("POST", v1 + "algoOrder"): Route(lambda r: e.place_algo(r.params), fixed(0), orders=1),
            ("GET", v1 + "algoOrder"): Route(lambda r: e.get_algo(r.params), fixed(1)),
            ("DELETE", v1 + "algoOrder"): Route(lambda r: e.cancel_algo(r.params), fixed(1)),
            ("GET", v1 + "openAlgoOrders"): Route(
                lambda r: e.open_algos(r.params), by_symbol(1, 40)
            ),
            ("GET", v1 + "allAlgoOrders"): Route(lambda r: e.all_algos(r.params), fixed(5)),
            ("DELETE", v1 + "algoOpenOrders"): Route(
                lambda r: e.cancel_all_algos(r.params), fixed(1)
            ),
            ("GET", v1 + "userTrades"): Route(lambda r: e.user_trades(r.params), fixed(5)),
            ("GET", v1 + "income"): Route(lambda r: e.income(r.params), fixed(30)),
            ("GET", v1 + "fundingRate"): Route(
                lambda r: e.funding_rate_history(r.params), fixed(1), signed=False
            ),
            **self._listen_key_routes(),
        }

    def _listen_key_routes(self) -> dict[tuple[str, str], Route]:
        keys = self.user_stream.keys
        path = "/fapi/v1/listenKey"
        return {
            ("POST", path): Route(lambda r: keys.create(), fixed(1), False, key_only=True),
            ("PUT", path): Route(lambda r: keys.keep_alive(), fixed(1), False, key_only=True),
            ("DELETE", path): Route(lambda r: keys.close(), fixed(1), False, key_only=True),
        }

    def _exchange_info(self, r: Request) -> dict[str, Any]:
        info = dict(symbol_data.exchange_info())
        info["serverTime"] = _ms()
        info["rateLimits"] = [
            {**limit, "limit": self._limit_for(limit)} for limit in info["rateLimits"]
        ]
        return info

    def _limit_for(self, entry: dict[str, Any]) -> int:
        if entry["rateLimitType"] == "REQUEST_WEIGHT":
            return self.limits.weight_1m
        if entry["interval"] == "SECOND":
            return self.limits.orders_10s
        return self.limits.orders_1m

    def _brackets(self, r: Request) -> Any:
        sym = r.params.symbol(required=False)
        rows = symbol_data.leverage_brackets()
        if sym is not None:
            return next(row for row in rows if row["symbol"] == sym.name)
        return rows

    def _commission(self, r: Request) -> dict[str, Any]:
        sym = r.params.symbol()
        assert sym is not None
        return {
            "symbol": sym.name,
            "makerCommissionRate": "0.0002",
            "takerCommissionRate": "0.0005",
        }

    def _set_multi_assets(self, r: Request) -> dict[str, Any]:
        if r.params.boolean("multiAssetsMargin"):
            raise reject(-1020)
        return {"code": 200, "msg": "success"}

    def _batch(self, r: Request) -> list[dict[str, Any]]:
        raw = r.params.required("batchOrders")
        try:
            batch = json.loads(raw)
        except ValueError as e:
            raise reject(-1130, "batchOrders") from e
        if not isinstance(batch, list):
            raise reject(-1130, "batchOrders")
        return self.engine.place_batch(batch)

    # ------------------------------------------------------------------ pipeline
    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, client_ip: str
    ) -> tuple[int, dict[str, str], bytes, Fault | None]:
        """Answer one request: ``(status, headers, body, fault to apply after answering)``."""
        split = urlsplit(target)
        path = split.path
        if path.startswith("/paper/v1/"):
            return (*self._control(method, path, headers, body, client_ip), None)
        key = f"{method} {path}"
        with self.lock:
            self.stats.requests[key] += 1
        fault = self.faults.take(method, path)
        if fault is not None:
            early = fault.before(self.stopping)
            if early is not None:
                return (*early, None)
        route = self.routes.get((method, path))
        status, out_headers, payload = self._answer(
            route, method, path, split.query, headers, body, client_ip
        )
        if route is not None and method != "GET" and status == 200:
            self.on_mutation()
        return status, out_headers, payload, fault

    def _answer(
        self,
        route: Route | None,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        client_ip: str,
    ) -> tuple[int, dict[str, str], bytes]:
        out: dict[str, str] = {}
        try:
            if route is None:
                out["Content-Type"] = "text/html"
                return 404, out, NOT_FOUND_BODY
            raw_body = body.decode("utf-8", "replace")
            params = _parse(query, raw_body if method in ("POST", "PUT") else "")
            weight = route.weight(params)
            self._charge(client_ip, weight, out)
            if route.signed:
                self._authenticate(headers, params, query, raw_body)
            elif route.key_only:
                self._check_api_key(headers)
            if route.orders:
                self._count_orders(route.orders, out)
            self.engine.catch_up()
            result = route.handler(Request(method, path, params, client_ip))
            return 200, out, _dumps(result)
        except BinanceError as e:
            with self.lock:
                self.stats.rejections[str(e.code)] += 1
            if e.code in (-1003,) and e.status in (418, 429):
                out.setdefault("Retry-After", "60")
            return e.status, out, _dumps(e.body())

    def _usage(self, client_ip: str) -> Usage:
        usage = self.usage.get(client_ip)
        if usage is None:
            usage = self.usage[client_ip] = Usage()
        return usage

    def _charge(self, client_ip: str, weight: int, out: dict[str, str]) -> None:
        """Add the request weight; answer 429 past the limit and 418 to clients that insist."""
        now = time.time()
        minute = int(now // 60)
        with self.lock:
            usage = self._usage(client_ip)
            if usage.minute != minute:
                usage.minute, usage.weight, usage.strikes = minute, 0, 0
            if usage.banned_until > now:
                retry = math.ceil(usage.banned_until - now)
                out["Retry-After"] = str(retry)
                out["X-MBX-USED-WEIGHT-1M"] = str(usage.weight)
                raise BinanceError(
                    -1003,
                    f"Way too many requests; IP banned until {int(usage.banned_until * 1000)}."
                    " Please use the websocket for live updates to avoid bans.",
                    418,
                )
            usage.weight += weight
            out["X-MBX-USED-WEIGHT-1M"] = str(usage.weight)
            if usage.weight > self.limits.weight_1m:
                usage.strikes += 1
                if usage.strikes > self.limits.ban_after:
                    usage.banned_until = now + self.limits.ban_seconds
                    out["Retry-After"] = str(self.limits.ban_seconds)
                    raise BinanceError(
                        -1003,
                        f"Way too many requests; IP banned until {int(usage.banned_until * 1000)}."
                        " Please use the websocket for live updates to avoid bans.",
                        418,
                    )
                out["Retry-After"] = str(max(1, math.ceil((minute + 1) * 60 - now)))
                raise reject(-1003, self.limits.weight_1m)

    def _count_orders(self, count: int, out: dict[str, str]) -> None:
        now = time.time()
        ten_s, minute = int(now // 10), int(now // 60)
        with self.lock:
            u = self.account_usage
            if u.ten_s != ten_s:
                u.ten_s, u.orders_10s = ten_s, 0
            if u.orders_minute != minute:
                u.orders_minute, u.orders_1m = minute, 0
            u.orders_10s += count
            u.orders_1m += count
            out["X-MBX-ORDER-COUNT-10S"] = str(u.orders_10s)
            out["X-MBX-ORDER-COUNT-1M"] = str(u.orders_1m)
            if u.orders_10s > self.limits.orders_10s:
                raise reject(-1015, self.limits.orders_10s, "TEN_SECONDS")
            if u.orders_1m > self.limits.orders_1m:
                raise reject(-1015, self.limits.orders_1m, "MINUTE")

    def _check_api_key(self, headers: dict[str, str]) -> None:
        key = headers.get("x-mbx-apikey", "")
        if not key:
            raise reject(-2014)
        if not hmac.compare_digest(key, self.api_key):
            raise reject(-2015)

    def _authenticate(self, headers: dict[str, str], params: Params, query: str, body: str) -> None:
        key = headers.get("x-mbx-apikey", "")
        if not key:
            raise reject(-2014)
        if not hmac.compare_digest(key, self.api_key):
            raise reject(-2015)
        timestamp = params.integer("timestamp")
        if timestamp is None:
            raise reject(-1102, "timestamp")
        recv_window = params.integer("recvWindow", 5000) or 5000
        if recv_window > MAX_RECV_WINDOW or recv_window <= 0:
            raise reject(-1130, "recvWindow")
        server = _ms()
        if timestamp > server + 1000:
            raise BinanceError(-1021, AHEAD_OF_SERVER)
        if server - timestamp > recv_window:
            raise reject(-1021)
        signature = params.text("signature")
        if signature is None:
            raise reject(-1102, "signature")
        payload = _without_signature(query) + _without_signature(body)
        expected = hmac.new(self.api_secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise reject(-1022)

    # ------------------------------------------------------------------ control
    def _control(
        self, method: str, path: str, headers: dict[str, str], body: bytes, client_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        from paper.control import handle_control

        if not self.control_from_anywhere:
            refusal = _browser_refusal(method, headers, body, client_ip)
            if refusal is not None:
                return 403, {}, _dumps({"error": refusal})
        try:
            data = json.loads(body, parse_constant=_no_constant) if body else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            status, result = handle_control(self, method, path, data)
        except (ValueError, KeyError, TypeError, ArithmeticError) as e:
            status, result = 400, {"error": f"{type(e).__name__}: {e}"}
        return status, {}, _dumps(result)

    def reset_counters(self) -> None:
        with self.lock:
            self.stats = Stats()
            self.usage.clear()
            self.account_usage = Usage()
        self.faults.clear()

    def snapshot_stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": dict(self.stats.requests),
                "weight_1m": sum(
                    u.weight for u in self.usage.values() if u.minute == int(time.time() // 60)
                ),
                "orders_accepted": self.engine.orders_accepted,
                "rejections": dict(self.stats.rejections),
            }


_REASONS = {status.value: status.phrase for status in HTTPStatus}
_LOOPBACK_IPS = ("127.0.0.1", "::1", "local")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def _browser_refusal(
    method: str, headers: dict[str, str], body: bytes, client_ip: str
) -> str | None:
    """Why a control request must be refused, or None.

    The control API moves prices and balances: only a local program may drive it, never a web
    page the operator happens to open. A page can reach 127.0.0.1 from the browser, so the
    Host must be a loopback name (no DNS rebinding), any Origin must be local, and a body must
    be JSON, which a cross-site form cannot send without the browser asking first.
    """
    if client_ip not in _LOOPBACK_IPS:
        return "the control API answers loopback clients only"
    host = headers.get("host", "")
    host_name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if host_name not in _LOOPBACK_HOSTS:
        return f"the control API answers requests to a loopback host only, not {host!r}"
    origin = headers.get("origin")
    if origin is not None:
        origin_host = urlsplit(origin).hostname or ""
        if origin_host not in ("127.0.0.1", "localhost", "::1"):
            return f"the control API refuses requests from web pages ({origin})"
    if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return "the control API refuses requests from web pages"
    if method in ("POST", "PUT", "DELETE") and body:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return "the control API takes a JSON body (Content-Type: application/json)"
    return None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number the control API accepts")


def _ms() -> int:
    return int(time.time() * 1000)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _parse(query: str, body: str) -> Params:
    pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise reject(-1101)
        values[name] = value
    return Params(values)


def _without_signature(raw: str) -> str:
    if "signature=" not in raw:
        return raw
    return "&".join(part for part in raw.split("&") if not part.startswith("signature="))


MAX_BODY_BYTES = 64 * 1024  # five batch orders fit many times over
SOCKET_TIMEOUT_SECONDS = 30.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PaperHTTPServer
    # A client that stops sending (or never finishes its headers) loses its connection.
    timeout = SOCKET_TIMEOUT_SECONDS

    def setup(self) -> None:
        self.timeout = self.server.socket_timeout
        super().setup()
        # Headers and body go out in one write; without NODELAY a keep-alive client would wait
        # for its delayed ACK (about 40 ms) on every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.client_address[0], *args)

    def _body_length(self) -> tuple[int, int | None]:
        """The declared body length, or the status that refuses it (body unread)."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.headers.get("Transfer-Encoding"):
                return 0, 400
            return 0, 400 if self.command in ("POST", "PUT") else None
        raw = raw.strip()
        if not raw.isdigit() or len(raw) > 12:
            return 0, 400
        length = int(raw)
        if length > MAX_BODY_BYTES:
            return 0, 413
        return length, None

    def _refuse(self, status: int) -> None:
        """Answer ``status`` and close: an unread body cannot be skipped safely."""
        self.close_connection = True
        payload = _dumps({"error": f"{status} {_REASONS.get(status, '')}: bad Content-Length"})
        with contextlib.suppress(OSError):
            self.wfile.write(
                (
                    f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                    "Content-Type: application/json;charset=UTF-8\r\n"
                    f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
                ).encode()
                + payload
            )

    def _serve(self) -> None:
        length, refusal = self._body_length()
        if refusal is not None:
            self._refuse(refusal)
            return
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:
            self.close_connection = True
            return
        if len(body) < length:  # the client gave up mid-body
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, out, payload, fault = self.server.app.handle(
                self.command, self.path, headers, body, self.client_address[0]
            )
        except Exception:
            # A bug must cost one request, not the connection or the server.
            logger.exception("paper exchange failed on %s %s", self.command, self.path)
            status, out, fault = 500, {}, None
            payload = _dumps(ERROR_BODY_500)
        if fault is not None and fault.drops_connection:
            # The request was processed; the client never hears back.
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault is not None:
            fault.after(self.server.app.stopping)
        try:
            content_type = out.pop("Content-Type", "application/json;charset=UTF-8")
            lines = [
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(payload)}",
                *(f"{name}: {value}" for name, value in out.items()),
            ]
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            self.log_request(status)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = _serve


class PaperHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one :class:`PaperApp`."""

    daemon_threads = True
    allow_reuse_address = True
    # Seconds a connection may sit silent mid-request (or idle between requests) before it is
    # closed, so slow or stuck clients cannot pile up threads.
    socket_timeout = SOCKET_TIMEOUT_SECONDS

    def __init__(self, address: tuple[str, int], app: PaperApp) -> None:
        super().__init__(address, _Handler)
        self.app = app

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


__all__ = ["DEFAULT_API_KEY", "HTTPStatus", "Limits", "PaperApp", "PaperHTTPServer"]
