"""Numbers as a trader reads them: prices on the symbol's tick, quantities on its step, money
to the cent. The one place the admin, the dashboard, the console and the log lines format them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Protocol

CENT = Decimal("0.01")
NONE_TEXT = "—"


class HasFilters(Protocol):
    tick_size: Decimal
    step_size: Decimal


def decimals_of(step: Decimal | None) -> int:
    """Places after the point of a tick or step: 0.10 -> 1, 0.001 -> 3, 1 -> 0."""
    if not step:
        return 0
    return max(0, -step.normalize().as_tuple().exponent)


def price_text(value: Decimal | None, symbol: HasFilters | None = None) -> str:
    """A price with its symbol's tick decimals: 99700.0 (tick 0.1), 1010.57 (tick 0.01).

    Without a symbol, the price as written, never in exponent form.
    """
    if value is None:
        return NONE_TEXT
    if symbol is None:
        return _plain(value)
    return _fixed(value, decimals_of(symbol.tick_size))


def quantity_text(value: Decimal | None, symbol: HasFilters | None = None) -> str:
    """A quantity with its symbol's step decimals: 0.011 (step 0.001), 1.18 (step 0.01)."""
    if value is None:
        return NONE_TEXT
    if symbol is None:
        return _plain(value)
    return _fixed(value, decimals_of(symbol.step_size))


def money_text(value: Decimal | None, *, grouped: bool = False, signed: bool = False) -> str:
    """USDT to the cent: -3.30, 1,833.33 (``grouped``), +4.10 (``signed``)."""
    if value is None:
        return NONE_TEXT
    # Banker's rounding, as Decimal and Python's own "{:.2f}" do; "+ 0" turns a negative zero
    # (-0.004 rounded) into 0.00.
    cents = value.quantize(CENT, rounding=ROUND_HALF_EVEN) + 0
    sign = "+" if signed and cents > 0 else ""
    return f"{sign}{cents:,}" if grouped else f"{sign}{cents}"


def percent_text(value: Decimal | None, *, places: int = 1) -> str:
    """A share as percent: Decimal("0.5") -> 50.0 %."""
    if value is None:
        return NONE_TEXT
    return f"{(value * 100).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)} %"


def duration_text(seconds: float | int | None) -> str:
    """A holding time or an age: 42 s, 7 min, 3 h 05, 2 d 4 h."""
    if seconds is None:
        return NONE_TEXT
    total = int(seconds)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min"
    if total < 86400:
        return f"{total // 3600} h {total % 3600 // 60:02d}"
    return f"{total // 86400} d {total % 86400 // 3600} h"


def _fixed(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):f}"


def _plain(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return text
