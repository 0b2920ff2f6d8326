"""What the order path's services return."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from trading.models import Position
from trading.services.events import _plain

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenOutcome:
    """What ``position_open`` did: opened, refused (nothing sent) or failed (reason says)."""

    OPENED = "opened"
    REFUSED = "refused"
    FAILED = "failed"

    status: str
    reason: str = ""
    position: Position | None = None

    @property
    def ok(self) -> bool:
        return self.status == self.OPENED

    def __str__(self) -> str:
        if self.ok and self.position is not None:
            p = self.position
            return f"opened {p.side} {_plain(p.quantity)} {p.symbol} @ {_plain(p.entry_price)}"
        return f"{self.status}: {self.reason}"


@dataclass(frozen=True)
class CloseOutcome:
    """What ``position_close`` did. Only CLOSED means the exchange position is gone."""

    CLOSED = "closed"
    PARTIAL = "partially closed"
    SKIPPED = "skipped"
    REFUSED = "refused"
    REJECTED = "rejected"
    FAILED = "failed"

    status: str
    reason: str = ""
    code: int | None = None
    quantity: Decimal = Decimal(0)
    pnl: Decimal | None = None
    position: Position | None = None

    @property
    def ok(self) -> bool:
        return self.status in (self.CLOSED, self.PARTIAL)

    def __str__(self) -> str:
        text = self.status
        if self.quantity:
            text += f" {self.quantity}"
        if self.code is not None:
            text += f" (code {self.code})"
        return f"{text}: {self.reason}" if self.reason else text
