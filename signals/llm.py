"""The LLM agent's pure parts: the prompt, the HTTP exchange, and the strict answer check.

Any OpenAI-compatible chat-completions endpoint works. The prompt follows nof1's Alpha Arena:
per symbol the price, EMA20, MACD, RSI and funding with short series ordered oldest to newest,
then the account and the open positions with their exit plans. The answer must be one JSON
object keyed by symbol; each entry is checked by hand against a strict schema. Anything else is
refused: numbers are never fished out of free text, and the model never picks size or leverage.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from signals.agents import AgentDecision
from signals.indicators import ema, macd, rsi

SIGNALS = {"buy_to_enter": "LONG", "sell_to_enter": "SHORT", "close": "FLAT", "hold": "HOLD"}
REQUIRED_FIELDS = {"signal", "confidence", "invalidation_condition", "justification"}
OPTIONAL_FIELDS = {"profit_target", "stop_loss"}
MAX_TEXT = 1000
SERIES_LENGTH = 10
# Enough history for MACD(12, 26, 9) plus a ten-point series, with warm-up for the EMAs.
CANDLES_FOR_PROMPT = 100
MAX_RESPONSE_BYTES = 1_000_000
# A number is a price or a confidence: longer text is junk (and must never be logged whole).
MAX_NUMBER_CHARS = 40
# The advisory prices are stored and shown: they must lie near the market (the rules allow exits
# at most 50 % away) and fit their column (10 decimal places).
MAX_PRICE_DISTANCE = Decimal("0.5")
PRICE_PLACES = Decimal("1e-10")
MAX_SYMBOL_CHARS = 32
MAX_ANSWER_ENTRIES = 50
MAX_COUNT = 2_147_483_647  # the token counts' column
SHOWN_CHARS = 60


class AnswerRefused(ValueError):
    """The whole answer is unusable (not JSON, not an object, empty): nothing is traded."""


@dataclass(frozen=True)
class MarketSnapshot:
    """What the prompt says about one symbol. ``closes`` are closed candles, oldest first."""

    symbol: str
    mark_price: Decimal
    funding_rate: Decimal
    closes: Sequence[Decimal]
    candle_interval: str


@dataclass(frozen=True)
class PositionSnapshot:
    symbol: str
    side: str
    quantity: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    leverage: int
    take_profit: Decimal | None
    stop_loss: Decimal | None


@dataclass(frozen=True)
class AccountSnapshot:
    equity: Decimal
    available: Decimal
    positions: Sequence[PositionSnapshot] = field(default_factory=tuple)


@dataclass(frozen=True)
class LlmResponse:
    """What came back over HTTP. ``error`` is set when there is no usable body."""

    status: int | None
    body: str
    latency_ms: int
    error: str = ""


# --- Prompt ----------------------------------------------------------------------------------

SYSTEM_PROMPT = """You are a trading agent for Binance USDT-M perpetual futures.
For each symbol you are given, decide one signal:
- "buy_to_enter": open a long position
- "sell_to_enter": open a short position
- "hold": do nothing (keep any open position as it is)
- "close": close the open position of that symbol
Position size, leverage and the protective orders are set by the operator's risk rules, never
by you: do not include quantity, leverage or risk fields.

Answer with exactly one JSON object and nothing else, keyed by symbol, with only these fields:
{
  "<SYMBOL>": {
    "signal": "buy_to_enter" | "sell_to_enter" | "hold" | "close",
    "confidence": <number from 0 to 1>,
    "profit_target": <price or null>,
    "stop_loss": <price or null>,
    "invalidation_condition": "<what would prove this trade wrong>",
    "justification": "<one or two short sentences>"
  }
}
For a long, stop_loss is below the current price and profit_target above it; for a short, the
reverse. Answer for every symbol you are given and no other."""


def _number(value: Decimal, places: int = 4) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def _series(values: Sequence[Decimal], places: int = 4) -> str:
    return "[" + ", ".join(_number(v, places) for v in values[-SERIES_LENGTH:]) + "]"


def _market_text(market: MarketSnapshot) -> str:
    closes = list(market.closes)
    ema20 = ema(closes, 20)
    macd_now = macd(closes)
    rsi7, rsi14 = rsi(closes, 7), rsi(closes, 14)
    missing = [n for n, s in (("EMA20", ema20), ("MACD", macd_now.line), ("RSI14", rsi14)) if not s]
    if missing:
        raise ValueError(f"not enough candles for {', '.join(missing)} ({len(closes)} closes)")
    return "\n".join(
        [
            f"ALL {market.symbol} DATA",
            f"current_price = {_number(market.mark_price)}, "
            f"current_ema20 = {_number(ema20[-1])}, current_macd = {_number(macd_now.line[-1])}, "
            f"current_rsi (7 period) = {_number(rsi7[-1], 2)}",
            f"Funding Rate: {market.funding_rate:f}",
            f"Intraday series ({market.candle_interval} candles, oldest → latest):",
            f"Close prices: {_series(closes)}",
            f"EMA indicators (20-period): {_series(ema20)}",
            f"MACD indicators: {_series(macd_now.line)}",
            f"RSI indicators (7-Period): {_series(rsi7, 2)}",
            f"RSI indicators (14-Period): {_series(rsi14, 2)}",
        ]
    )


def _position_text(position: PositionSnapshot) -> str:
    plan = {
        "profit_target": None if position.take_profit is None else f"{position.take_profit:f}",
        "stop_loss": None if position.stop_loss is None else f"{position.stop_loss:f}",
    }
    return json.dumps(
        {
            "symbol": position.symbol,
            "side": position.side,
            "quantity": f"{position.quantity:f}",
            "entry_price": f"{position.entry_price:f}",
            "current_price": f"{position.mark_price:f}",
            "unrealized_pnl": f"{position.unrealized_pnl:f}",
            "leverage": position.leverage,
            "exit_plan": plan,
        }
    )


def llm_messages(
    *, markets: Sequence[MarketSnapshot], account: AccountSnapshot, now: datetime
) -> list[dict[str, str]]:
    """The chat messages for one request. Raises ``ValueError`` when a series is too short."""
    parts = [
        f"Current time (UTC): {now.isoformat(timespec='seconds')}",
        "ALL OF THE PRICE OR SIGNAL DATA BELOW IS ORDERED: OLDEST → NEWEST",
        "CURRENT MARKET STATE",
        *(_market_text(m) for m in markets),
        "HERE IS YOUR ACCOUNT INFORMATION",
        f"Current Account Value: {_number(account.equity, 2)} USDT",
        f"Available Cash: {_number(account.available, 2)} USDT",
        "Current live positions & exit plans:",
        *([_position_text(p) for p in account.positions] or ["none"]),
        f"Decide for: {', '.join(m.symbol for m in markets)}",
    ]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def llm_request_body(*, model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages,
        "response_format": {"type": "json_object"},
        "temperature": 0,
    }


# --- HTTP ------------------------------------------------------------------------------------


def llm_url_refusal(url: str) -> str | None:
    """Why ``url`` may not receive the API key, or None: https only (plain http on loopback)."""
    if not url:
        return "LLM_API_URL is not set"
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError:
        return "LLM_API_URL is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "LLM_API_URL must be an https:// URL"
    if parts.username or parts.password:
        return "LLM_API_URL must not carry credentials (the key comes from LLM_API_KEY)"
    if parts.scheme == "http" and not _is_loopback(host):
        return "LLM_API_URL must use https (plain http only on this machine)"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def llm_post(*, url: str, api_key: str, body: dict[str, Any], timeout: float) -> LlmResponse:
    """POST the body to ``{url}/chat/completions``; never raises, never logs the key.

    ``timeout`` bounds the whole exchange (connect, headers, body), not each socket read: a
    watchdog shuts the socket down at the deadline, so a server that trickles bytes cannot hold
    the cycle past it. Redirects are refused, never followed: the key goes to ``url``'s host only.
    """
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    refusal = llm_url_refusal(url)
    if refusal:
        return LlmResponse(status=None, body="", latency_ms=0, error=refusal)
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/chat/completions" + (f"?{parts.query}" if parts.query else "")
    # The port always explicit: http.client would read "::1" as host "::" and port 1.
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    expired = threading.Event()
    opened: list[socket.socket] = []

    def abort() -> None:
        expired.set()
        # The socket as opened: http.client drops its own reference once the headers say
        # "close", while the response keeps reading from it.
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(timeout, abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        opened.append(connection.sock)
        if expired.is_set():
            raise TimeoutError
        connection.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
        if expired.is_set():
            raise TimeoutError
        response = connection.getresponse()
        if 300 <= response.status < 400:
            return LlmResponse(
                status=response.status,
                body="",
                latency_ms=elapsed(),
                error=f"redirect refused (HTTP {response.status}): the key is sent nowhere else",
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                return LlmResponse(
                    status=response.status,
                    body=b"".join(chunks)[:4096].decode(errors="replace"),
                    latency_ms=elapsed(),
                    error=f"response larger than {MAX_RESPONSE_BYTES} bytes",
                )
        if expired.is_set():
            raise TimeoutError
        text = b"".join(chunks).decode(errors="replace")
        if response.status >= 400:
            return LlmResponse(
                status=response.status,
                body=text[:4096],
                latency_ms=elapsed(),
                error=f"HTTP {response.status} {response.reason}"[:200],
            )
        return LlmResponse(status=response.status, body=text, latency_ms=elapsed())
    except (OSError, http.client.HTTPException, ValueError) as e:
        if expired.is_set() or isinstance(e, TimeoutError):
            error = f"timeout after {timeout:g}s"
        elif isinstance(e, ssl.SSLError):
            error = f"TLS failed: {e.reason or type(e).__name__}"
        else:
            error = f"connection failed: {type(e).__name__}"
        return LlmResponse(status=None, body="", latency_ms=elapsed(), error=error)
    finally:
        watchdog.cancel()
        connection.close()


# --- Strict answer check ---------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON lets a key repeat and the last one wins silently; an answer that says two things is
    # refused instead.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _bounded_number(text: str, kind: type) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    return kind(text)


def strict_json_loads(text: str) -> Any:
    """Parse JSON with floats as ``Decimal``, refusing NaN, Infinity, repeated keys and numbers
    longer than ``MAX_NUMBER_CHARS``. Every parser failure (deep nesting included) is a
    ``ValueError``."""
    try:
        return json.loads(
            text,
            parse_float=lambda t: _bounded_number(t, Decimal),
            parse_int=lambda t: _bounded_number(t, int),
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _shown(value: Any) -> str:
    """A value for a refusal reason: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}… ({len(text)} chars)"


def completion_content(body: str) -> tuple[str, dict[str, int | None]]:
    """The assistant message text and the token usage of a chat-completions response body.

    Raises ``AnswerRefused`` when the body is not a chat completion with a text answer.
    """
    try:
        envelope = strict_json_loads(body)
    except ValueError as e:
        raise AnswerRefused(f"response body is not JSON: {e}") from None
    if not isinstance(envelope, dict):
        raise AnswerRefused("response body is not a JSON object")
    usage = envelope.get("usage") if isinstance(envelope.get("usage"), dict) else {}
    tokens = {
        name: usage.get(name) if _is_count(usage.get(name)) else None
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    choices = envelope.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise AnswerRefused("response has no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise AnswerRefused("empty answer")
    return content, tokens


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def answer_parse(
    *, content: str, asked: Mapping[str, Decimal], enabled: set[str]
) -> dict[str, AgentDecision | str]:
    """Check an answer against the strict schema, symbol by symbol.

    ``asked`` maps each asked symbol to its mark price. Returns, for every asked symbol and every
    other symbol the answer names, either the decision or the reason it was refused, so one bad
    entry never discards the others. Raises ``AnswerRefused`` when the whole answer is unusable.
    """
    try:
        answer = strict_json_loads(content.strip())
    except ValueError as e:
        raise AnswerRefused(f"answer is not valid JSON: {e}") from None
    if not isinstance(answer, dict):
        raise AnswerRefused("answer is not a JSON object keyed by symbol")
    if not answer:
        raise AnswerRefused("empty answer")
    if len(answer) > MAX_ANSWER_ENTRIES:
        raise AnswerRefused(f"answer has {len(answer)} entries (at most {MAX_ANSWER_ENTRIES})")
    results: dict[str, AgentDecision | str] = {}
    for symbol, entry in answer.items():
        if len(symbol) > MAX_SYMBOL_CHARS:
            results[symbol[:MAX_SYMBOL_CHARS]] = f"{_shown(symbol)} is not a symbol"
        elif symbol not in enabled:
            results[symbol] = f"{symbol} is not an enabled symbol"
        elif symbol not in asked:
            results[symbol] = f"{symbol} was not asked"
        else:
            try:
                results[symbol] = _entry_parse(symbol=symbol, entry=entry, mark=asked[symbol])
            except ValueError as e:
                results[symbol] = f"{symbol}: {e}"
    for symbol in asked:
        results.setdefault(symbol, f"no decision for {symbol} in the answer")
    return results


def _entry_parse(*, symbol: str, entry: Any, mark: Decimal) -> AgentDecision:
    if not isinstance(entry, dict):
        raise ValueError("entry is not a JSON object")
    extra = sorted(set(entry) - REQUIRED_FIELDS - OPTIONAL_FIELDS)
    if extra:
        raise ValueError(f"unexpected field(s): {', '.join(extra)}")
    missing = sorted(REQUIRED_FIELDS - set(entry))
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    signal = entry["signal"]
    if not isinstance(signal, str) or signal not in SIGNALS:
        raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, not {_shown(signal)}")
    confidence = _decimal("confidence", entry["confidence"])
    if not Decimal(0) <= confidence <= Decimal(1):
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    target = _price("profit_target", entry.get("profit_target"), mark=mark)
    stop = _price("stop_loss", entry.get("stop_loss"), mark=mark)
    invalidation = _text("invalidation_condition", entry["invalidation_condition"])
    justification = _text("justification", entry["justification"], required=True)
    action = SIGNALS[signal]
    _check_sides(action=action, mark=mark, target=target, stop=stop)
    return AgentDecision(
        action=action,  # type: ignore[arg-type]  # SIGNALS maps only onto Action values
        reason=f"LLM {signal} ({confidence}): {justification}",
        confidence=confidence,
        profit_target=target,
        stop_loss=stop,
        details={
            "signal": signal,
            "mark_price": str(mark),
            "invalidation_condition": invalidation,
        },
    )


def _decimal(name: str, value: Any) -> Decimal:
    # Integers arrive as int, fractions as Decimal (parse_float); booleans are ints in Python.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"{name} must be a number, not {_shown(value)}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{name} must be finite")
    return number


def _price(name: str, value: Any, *, mark: Decimal) -> Decimal | None:
    if value is None:
        return None
    price = _decimal(name, value)
    if price <= 0:
        raise ValueError(f"{name} must be positive, not {price}")
    low, high = mark * (1 - MAX_PRICE_DISTANCE), mark * (1 + MAX_PRICE_DISTANCE)
    if not low <= price <= high:
        raise ValueError(
            f"{name} {price} is more than {int(MAX_PRICE_DISTANCE * 100)} % away from the price "
            f"{mark.normalize():f}"
        )
    # More decimals than the column keeps would be rounded by the database anyway; do it here.
    return price.quantize(PRICE_PLACES) if price.as_tuple().exponent < -10 else price


def _text(name: str, value: Any, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    if required and not value.strip():
        raise ValueError(f"{name} is empty")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} is longer than {MAX_TEXT} characters")
    return value


def _check_sides(
    *, action: str, mark: Decimal, target: Decimal | None, stop: Decimal | None
) -> None:
    """An entry's stop must be on the losing side of the mark price and its target on the other."""
    if action == "LONG":
        if stop is not None and stop >= mark:
            raise ValueError(f"stop_loss {stop} is not below the price {mark} for a long")
        if target is not None and target <= mark:
            raise ValueError(f"profit_target {target} is not above the price {mark} for a long")
    elif action == "SHORT":
        if stop is not None and stop <= mark:
            raise ValueError(f"stop_loss {stop} is not above the price {mark} for a short")
        if target is not None and target >= mark:
            raise ValueError(f"profit_target {target} is not below the price {mark} for a short")
