"""The ways the database and the exchange can disagree, as reconcile reports them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Difference:
    """One way the database and the exchange disagree."""

    kind: str
    symbol: str
    detail: str
    repairable: bool
    repaired: bool = False
    outcome: str = ""  # what the repair did, or why it did not

    def __str__(self) -> str:
        state = (
            "repaired" if self.repaired else ("repairable" if self.repairable else "needs a person")
        )
        text = f"[{self.kind}] {self.symbol}: {self.detail} ({state}"
        return text + (f": {self.outcome})" if self.outcome else ")")


# Kinds, in the order they are reported.
CLOSED_ON_EXCHANGE = "closed on exchange"
LOST_INTENT = "lost intent"
STALE_ORDER = "order status stale"
ORPHAN_ORDER = "orphan order"
UNKNOWN_POSITION = "unknown position"
UNKNOWN_ORDER = "unknown order"
MISMATCH = "position mismatch"
UNRECORDED_ENTRY = "entry not recorded"
EXIT_MISSING = "exit missing"
STATUS_CONTRADICTED = "status contradicted"
