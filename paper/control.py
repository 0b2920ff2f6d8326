"""The control API under ``/paper/v1/``: JSON in and out, no signature, loopback only.

=======  ======================  ==============================================================
Method   Path                    Body / answer
=======  ======================  ==============================================================
POST     /paper/v1/price         ``{"symbol": "BTCUSDT", "price": "100000"}``: last and mark
                                 price jump there and the matching engine runs; an optional
                                 ``"mark_price"`` sets the mark price apart
POST     /paper/v1/balance       ``{"asset": "USDT", "amount": "1833.33"}``: wallet balance
POST     /paper/v1/reset         everything back to start: orders, positions, balance, prices,
                                 counters, faults, limits
GET      /paper/v1/stats         ``{"requests": {"GET /fapi/v1/openOrders": n}, "weight_1m": n,
                                 "orders_accepted": n, "rejections": {"-1111": n}}``
POST     /paper/v1/faults        one fault spec (see :mod:`paper.faults`)
DELETE   /paper/v1/faults        clear every fault; hidden algo orders become visible
GET      /paper/v1/faults        the pending faults
POST     /paper/v1/config        ``{"weight_limit_1m": n, "orders_10s": n, "orders_1m": n,
                                 "ban_after": n, "ban_seconds": n, "slippage": "0.001"}``
POST     /paper/v1/options       ``{"exit_on_flat": "expire"}``: change options (see
                                 :mod:`paper.options`); answers all of them
GET      /paper/v1/options       the options in force
POST     /paper/v1/funding       ``{"symbol": "BTCUSDT", "rate": "-0.0003"}``: the rate
                                 published (and charged) at the next funding times
POST     /paper/v1/advance       ``{"seconds": 28800}``: exchange time moves forward (order,
                                 trade and income times; funding falls due on the way)
GET      /paper/v1/positions     non-flat positions (positionRisk v2 rows)
GET      /paper/v1/open_orders   ``{"orders": [...], "algo_orders": [...]}``, hidden ones too
POST     /paper/v1/stream        user data stream faults and settings (see
                                 :func:`paper.stream_control.handle_stream_control`); answers
                                 its status; GET: the status alone
=======  ======================  ==============================================================
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from paper.stream_control import handle_stream_control
from paper.symbols import symbols

if TYPE_CHECKING:
    from paper.server import PaperApp


def handle_control(app: PaperApp, method: str, path: str, data: dict[str, Any]) -> tuple[int, Any]:
    """Answer one control request with ``(http status, JSON body)``."""
    engine = app.engine
    name = path.removeprefix("/paper/v1/").strip("/")
    if (method, name) == ("POST", "price"):
        symbol = str(data["symbol"])
        if symbol not in symbols():
            return 400, {"error": f"unknown symbol {symbol}"}
        price = _amount(data["price"], "price", positive=True)
        mark = None
        if data.get("mark_price") is not None:
            mark = _amount(data["mark_price"], "mark_price", positive=True)
        sym = symbols()[symbol]
        for value in (price, mark):
            if value is not None and not sym.min_price <= value <= sym.max_price:
                return 400, {
                    "error": f"{symbol} prices lie from {sym.min_price} to {sym.max_price}"
                }
        engine.set_price(symbol, price, mark)
        app.on_mutation()
        return 200, {"symbol": symbol, "price": str(price)}
    if (method, name) == ("POST", "balance"):
        asset = str(data.get("asset", "USDT"))
        if asset not in ("USDT", "BNB"):
            return 400, {"error": f"asset must be USDT or BNB, not {asset!r}"}
        engine.set_balance(asset, _amount(data["amount"], "amount", positive=False))
        app.on_mutation()
        return 200, {"asset": data.get("asset", "USDT"), "amount": str(data["amount"])}
    if (method, name) == ("POST", "reset"):
        engine.reset()
        app.reset_counters()
        app.limits = type(app.limits)()
        engine.slippage = Decimal(0)
        app.user_stream.reset()
        app.on_mutation()
        return 200, {"reset": True}
    if (method, name) == ("GET", "stats"):
        return 200, app.snapshot_stats()
    if (method, name) == ("POST", "faults"):
        if data.get("kind") == "algo_hidden":
            engine.algo_visibility_delay_ms = int(float(data.get("seconds", 30)) * 1000)
            return 200, {"added": data}
        app.faults.add(dict(data))
        return 200, {"added": data}
    if (method, name) == ("DELETE", "faults"):
        app.faults.clear()
        engine.reveal_algos()
        return 200, {"cleared": True}
    if (method, name) == ("GET", "faults"):
        return 200, {"faults": app.faults.pending()}
    if (method, name) == ("POST", "config"):
        for key, attr in (
            ("weight_limit_1m", "weight_1m"),
            ("orders_10s", "orders_10s"),
            ("orders_1m", "orders_1m"),
            ("ban_after", "ban_after"),
            ("ban_seconds", "ban_seconds"),
        ):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int | str):
                    raise ValueError(f"{key} must be a whole number")
                number = int(value)
                if number < 0:
                    raise ValueError(f"{key} must not be negative")
                setattr(app.limits, attr, number)
        if "slippage" in data:
            slippage = _amount(data["slippage"], "slippage", positive=False)
            if slippage >= 1:
                raise ValueError("slippage must be below 1")
            engine.slippage = slippage
        return 200, {"config": data}
    if (method, name) == ("POST", "options"):
        with engine.lock:
            engine.options = engine.options.updated(data)
        return 200, engine.options.to_json()
    if (method, name) == ("GET", "options"):
        return 200, engine.options.to_json()
    if (method, name) == ("POST", "funding"):
        symbol = str(data["symbol"])
        if symbol not in symbols():
            return 400, {"error": f"unknown symbol {symbol}"}
        rate = _number(data["rate"], "rate")
        if abs(rate) > 1:
            return 400, {"error": "rate must be a finite number between -1 and 1"}
        engine.set_funding_rate(symbol, rate)
        app.on_mutation()
        return 200, {"symbol": symbol, "rate": str(rate)}
    if (method, name) == ("POST", "advance"):
        seconds = _amount(data["seconds"], "seconds", positive=False)
        if seconds > 10 * 365 * 86_400:
            return 400, {"error": "seconds: at most ten years at once"}
        engine.advance_time(int(seconds * 1000))
        app.on_mutation()
        return 200, {"time": engine.now()}
    if (method, name) == ("GET", "positions"):
        return 200, engine.debug_positions()
    if name == "stream":
        return handle_stream_control(app.user_stream, method, data)
    if (method, name) == ("GET", "open_orders"):
        return 200, engine.debug_open_orders()
    return 404, {"error": f"no control endpoint {method} {path}"}


def _number(raw: object, name: str) -> Decimal:
    """A finite decimal from a JSON string or number; ValueError otherwise (answers 400)."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"{name} must be a number")
    try:
        value = Decimal(str(raw))
    except InvalidOperation as e:
        raise ValueError(f"{name} must be a number, not {raw!r}") from e
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, not {raw!r}")
    return value


def _amount(raw: object, name: str, *, positive: bool) -> Decimal:
    """A finite amount, zero or more (above zero with ``positive``)."""
    value = _number(raw, name)
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'above' if positive else 'at least'} zero")
    return value
