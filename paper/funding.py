"""Funding: the published rate per symbol and the 8-hourly settlement schedule.

Binance settles funding at 00:00, 08:00 and 16:00 UTC: a position pays (or receives) its mark
notional times the rate, longs paying when the rate is positive. The schedule here only says
when a settlement falls due and what rate was published; the engine books the money.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from paper.symbols import Symbol

FUNDING_INTERVAL_MS = 8 * 3600 * 1000
DEFAULT_RATE = Decimal("0.0001")
# Settlements published before the exchange started, so a history request has something to read.
PUBLISHED_BEFORE_START = 21


@dataclass
class FundingEvent:
    """One settlement as ``/fapi/v1/fundingRate`` reports it."""

    symbol: str
    rate: Decimal
    time: int
    mark_price: Decimal

    def to_binance(self, sym: Symbol) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "fundingRate": f"{self.rate:.8f}",
            "fundingTime": self.time,
            "markPrice": f"{self.mark_price:.8f}",
        }


def boundary_at_or_before(ms: int) -> int:
    """The latest settlement time not after ``ms``."""
    return ms - ms % FUNDING_INTERVAL_MS


def next_boundary(ms: int) -> int:
    """The first settlement time after ``ms``."""
    return boundary_at_or_before(ms) + FUNDING_INTERVAL_MS


def due_between(after: int, until: int) -> list[int]:
    """Settlement times in ``(after, until]``, oldest first."""
    first = next_boundary(after)
    return list(range(first, until + 1, FUNDING_INTERVAL_MS))
