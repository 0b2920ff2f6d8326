"""What a signal agent answers for one symbol."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Action = Literal["LONG", "SHORT", "FLAT", "HOLD"]


@dataclass(frozen=True)
class Decision:
    """LONG/SHORT: open that side; FLAT: close the open position; HOLD: do nothing.

    The agent never chooses size or leverage: those come from the rules. An agent's optional
    exit prices are advisory and recorded; the order path places exits from the risk rules.
    """

    action: Action
    reason: str
    confidence: Decimal | None = None
    decision_id: int | None = None  # the stored audit row, when there is one
