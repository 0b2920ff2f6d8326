"""Technical indicators as pure functions on ``Decimal`` lists, oldest value first.

Each function returns one value per input from the first index where the indicator is defined,
so the last output always belongs to the last input (``ema(closes, 9)[-1]`` is the EMA at the
last close). All arithmetic runs in one fixed decimal context: the same inputs give the same
digits on every machine, which is what makes the rule-based agent reproducible.
"""

from __future__ import annotations

import decimal
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

# 28 significant digits is Python's default; pinning it here keeps results independent of
# whatever context the calling thread happens to have.
_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Macd:
    """MACD line (fast EMA - slow EMA), its signal EMA and the histogram, tail-aligned."""

    line: list[Decimal]
    signal: list[Decimal]
    histogram: list[Decimal]


def _check_period(period: int) -> None:
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"period must be a positive integer, not {period!r}")


def ema(values: Sequence[Decimal], period: int) -> list[Decimal]:
    """Exponential moving average seeded with the simple average of the first ``period`` values.

    Returns ``len(values) - period + 1`` values (none when there are fewer values than the period).
    """
    _check_period(period)
    if len(values) < period:
        return []
    with decimal.localcontext(_CONTEXT):
        alpha = Decimal(2) / Decimal(period + 1)
        current = sum(values[:period], Decimal(0)) / Decimal(period)
        result = [current]
        for value in values[period:]:
            current = current + alpha * (value - current)
            result.append(current)
    return result


def rsi(values: Sequence[Decimal], period: int = 14) -> list[Decimal]:
    """Relative strength index with Wilder's smoothing, 0 to 100.

    The first value averages the first ``period`` changes; later ones smooth as
    ``avg = (avg * (period - 1) + change) / period``. Returns ``len(values) - period`` values.
    A window without losses reads 100, one without gains 0, a flat one 50.
    """
    _check_period(period)
    if len(values) <= period:
        return []
    with decimal.localcontext(_CONTEXT):
        changes = [b - a for a, b in itertools.pairwise(values)]
        gains = [max(change, Decimal(0)) for change in changes]
        losses = [max(-change, Decimal(0)) for change in changes]
        size = Decimal(period)
        avg_gain = sum(gains[:period], Decimal(0)) / size
        avg_loss = sum(losses[:period], Decimal(0)) / size
        result = [_rsi_value(avg_gain, avg_loss)]
        for gain, loss in zip(gains[period:], losses[period:], strict=True):
            avg_gain = (avg_gain * (size - 1) + gain) / size
            avg_loss = (avg_loss * (size - 1) + loss) / size
            result.append(_rsi_value(avg_gain, avg_loss))
    return result


def _rsi_value(avg_gain: Decimal, avg_loss: Decimal) -> Decimal:
    if avg_loss == 0:
        return Decimal(50) if avg_gain == 0 else _HUNDRED
    return _HUNDRED - _HUNDRED / (1 + avg_gain / avg_loss)


def macd(values: Sequence[Decimal], fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """MACD(fast, slow, signal): the three series cut to the length of the shortest (signal)."""
    _check_period(fast)
    _check_period(slow)
    _check_period(signal)
    if fast >= slow:
        raise ValueError(f"fast period {fast} must be shorter than slow period {slow}")
    fast_ema, slow_ema = ema(values, fast), ema(values, slow)
    if not slow_ema:
        return Macd(line=[], signal=[], histogram=[])
    with decimal.localcontext(_CONTEXT):
        # Both series are tail-aligned, so pairing from the end pairs the same candles.
        line = [f - s for f, s in zip(fast_ema[-len(slow_ema) :], slow_ema, strict=True)]
        signal_line = ema(line, signal)
        line = line[-len(signal_line) :] if signal_line else []
        histogram = [m - s for m, s in zip(line, signal_line, strict=True)]
    return Macd(line=line, signal=signal_line, histogram=histogram)
