"""Signal agents as pure functions: market data in, a decision out; nothing is read or written.

``signals.services`` fetches the data through the exchange gateway, calls an agent here, and
stores what it decided. Keeping the agents pure is what lets a test replay a candle file and get
the same decisions every time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from exchange.gateway import Candle
from signals.indicators import ema, rsi
from signals.types import Action

CANDLE_SECONDS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400}
# A candle list is stale when its newest candle opened longer ago than this many intervals: the
# newest candle (closed or still forming) opens at most two intervals back on a live feed.
STALE_INTERVALS = 2


class InvalidParameters(ValueError):
    """A strategy's parameters cannot be used: the cycle holds and says which one is wrong."""


@dataclass(frozen=True)
class AgentDecision:
    """An agent's answer before it is stored; prices here are advisory only."""

    action: Action
    reason: str
    confidence: Decimal | None = None
    profit_target: Decimal | None = None
    stop_loss: Decimal | None = None
    details: dict[str, Any] = field(default_factory=dict)


def hold(reason: str, **details: Any) -> AgentDecision:
    """A decision to do nothing, with the reason an operator reads in the admin."""
    return AgentDecision(action="HOLD", reason=reason, details=details)


def candle_seconds(interval: str) -> int:
    """Seconds in one candle of a Binance interval such as ``1m`` or ``4h``."""
    try:
        return CANDLE_SECONDS[interval]
    except KeyError:
        raise InvalidParameters(
            f"unknown candle interval {interval!r}; use one of {', '.join(CANDLE_SECONDS)}"
        ) from None


def candles_stale_reason(
    *, candles: Sequence[Candle], interval_seconds: int, now: datetime
) -> str | None:
    """Why these candles are too old to trade on, or ``None`` when they are fresh."""
    if not candles:
        return "no candles from the exchange"
    age = now - candles[-1].open_time
    if age > timedelta(seconds=STALE_INTERVALS * interval_seconds):
        return (
            f"stale data: last candle opened {int(age.total_seconds())}s ago, more than "
            f"{STALE_INTERVALS} candle intervals ({STALE_INTERVALS * interval_seconds}s)"
        )
    return None


def closed_candles(
    *, candles: Sequence[Candle], interval_seconds: int, now: datetime
) -> list[Candle]:
    """Drop the candle still forming: its close moves until it closes, and so would a signal."""
    span = timedelta(seconds=interval_seconds)
    return [c for c in candles if c.open_time + span <= now]


# --- Rule-based: EMA crossover with an RSI filter --------------------------------------------


@dataclass(frozen=True)
class RuleParameters:
    ema_fast: int = 9
    ema_slow: int = 21
    rsi_period: int = 14
    rsi_overbought: Decimal = Decimal(70)
    rsi_oversold: Decimal = Decimal(30)
    # How many of the latest closed candles a crossover may be in; None = one cycle's worth.
    cross_lookback: int | None = None

    def candles_needed(self, lookback: int) -> int:
        return max(self.ema_slow + lookback, self.rsi_period + 1)


_INT_PARAMETERS = {
    "ema_fast": (1, 500),
    "ema_slow": (2, 500),
    "rsi_period": (2, 200),
    "cross_lookback": (1, 500),
}
_LEVEL_PARAMETERS = ("rsi_overbought", "rsi_oversold")


def rule_parameters_parse(parameters: Mapping[str, Any]) -> RuleParameters:
    """Validate a Strategy's parameters for the rule-based agent; missing ones take defaults.

    Raises ``InvalidParameters`` naming the first unusable parameter, including unknown names,
    so a typo (``ema_fsat``) is refused instead of silently running on the default.
    """
    if not isinstance(parameters, Mapping):
        raise InvalidParameters("parameters must be a JSON object")
    unknown = sorted(set(parameters) - set(_INT_PARAMETERS) - set(_LEVEL_PARAMETERS))
    if unknown:
        raise InvalidParameters(f"unknown parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, (low, high) in _INT_PARAMETERS.items():
        if name in parameters:
            values[name] = _integer(name, parameters[name], low, high)
    for name in _LEVEL_PARAMETERS:
        if name in parameters:
            values[name] = _level(name, parameters[name])
    result = RuleParameters(**values)
    if result.ema_fast >= result.ema_slow:
        raise InvalidParameters(
            f"ema_fast ({result.ema_fast}) must be shorter than ema_slow ({result.ema_slow})"
        )
    if not result.rsi_oversold < Decimal(50) < result.rsi_overbought:
        raise InvalidParameters(
            f"need rsi_oversold < 50 < rsi_overbought, got {result.rsi_oversold} and "
            f"{result.rsi_overbought}"
        )
    return result


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InvalidParameters(f"{name} must be a whole number, not {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidParameters(f"{name} must be a whole number, not {value!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise InvalidParameters(f"{name} must be a whole number, not {value!r}")
    if not low <= number <= high:
        raise InvalidParameters(f"{name} must be between {low} and {high}, not {value!r}")
    return int(number)


def _level(name: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise InvalidParameters(f"{name} must be a number, not {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidParameters(f"{name} must be a number, not {value!r}") from None
    if not number.is_finite() or not Decimal(0) < number < Decimal(100):
        raise InvalidParameters(f"{name} must be between 0 and 100, not {value!r}")
    return number


def rule_lookback(*, parameters: RuleParameters, cycle_seconds: int, interval_seconds: int) -> int:
    """Candles a crossover may be in: one cycle's worth, so none falls between two cycles."""
    if parameters.cross_lookback is not None:
        return parameters.cross_lookback
    return max(1, math.ceil(cycle_seconds / interval_seconds))


def rule_decide(
    *,
    candles: Sequence[Candle],
    parameters: RuleParameters,
    interval_seconds: int,
    lookback: int,
    now: datetime,
) -> AgentDecision:
    """EMA crossover with an RSI filter on the closed candles; deterministic for given inputs.

    LONG when the fast EMA crossed above the slow one within the last ``lookback`` closed candles,
    is still above, and RSI is below overbought (not chasing an exhausted move); SHORT mirrored
    with RSI above oversold. Everything else holds, with the reason.
    """
    stale = candles_stale_reason(candles=candles, interval_seconds=interval_seconds, now=now)
    if stale:
        return hold(stale)
    closed = closed_candles(candles=candles, interval_seconds=interval_seconds, now=now)
    needed = parameters.candles_needed(lookback)
    if len(closed) < needed:
        return hold(f"not enough closed candles: {len(closed)} of {needed}")
    closes = [c.close for c in closed]
    fast, slow = ema(closes, parameters.ema_fast), ema(closes, parameters.ema_slow)
    # Fast minus slow for the last lookback + 1 candles (tail-aligned series).
    spread = [f - s for f, s in zip(fast[-(lookback + 1) :], slow[-(lookback + 1) :], strict=True)]
    rsi_now = rsi(closes, parameters.rsi_period)[-1]
    details = {
        "candle": closed[-1].open_time.isoformat(),
        "close": str(closes[-1]),
        f"ema{parameters.ema_fast}": str(_display(fast[-1])),
        f"ema{parameters.ema_slow}": str(_display(slow[-1])),
        f"rsi{parameters.rsi_period}": str(_display(rsi_now)),
    }
    cross = _latest_cross(spread)
    emas = (
        f"EMA{parameters.ema_fast} {_display(fast[-1])} vs "
        f"EMA{parameters.ema_slow} {_display(slow[-1])}"
    )
    rsi_text = f"RSI{parameters.rsi_period} {_display(rsi_now, places=2)}"
    if cross is None:
        return hold(f"no crossover in the last {lookback} candle(s); {emas}", **details)
    if cross == "up":
        if rsi_now >= parameters.rsi_overbought:
            return hold(
                f"EMA crossed up but {rsi_text} is overbought (>= {parameters.rsi_overbought})",
                **details,
            )
        return AgentDecision(
            action="LONG", reason=f"EMA crossed up; {emas}; {rsi_text}", details=details
        )
    if rsi_now <= parameters.rsi_oversold:
        return hold(
            f"EMA crossed down but {rsi_text} is oversold (<= {parameters.rsi_oversold})",
            **details,
        )
    return AgentDecision(
        action="SHORT", reason=f"EMA crossed down; {emas}; {rsi_text}", details=details
    )


def _latest_cross(spread: Sequence[Decimal]) -> str | None:
    """``up``/``down`` for the latest crossover that still holds at the last candle, else None."""
    for i in range(len(spread) - 1, 0, -1):
        before, after = spread[i - 1], spread[i]
        if before <= 0 < after:
            return "up" if spread[-1] > 0 else None
        if before >= 0 > after:
            return "down" if spread[-1] < 0 else None
    return None


def _display(value: Decimal, places: int = 8) -> Decimal:
    """Round for people and prompts only; decisions use the unrounded values."""
    return value.quantize(Decimal(1).scaleb(-places))
