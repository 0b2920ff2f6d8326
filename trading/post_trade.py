"""The post-trade check: a position whose margin grew past the rules (equity fell, a fill came
in larger) is partly closed, with the same arithmetic the sizing used (``risk.sizing``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from risk.selectors import risk_profile_for_symbol
from risk.sizing import position_excess
from trading.models import Position
from trading.services.exit import position_close
from trading.services.outcomes import CloseOutcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostTradeOutcome:
    """What the post-trade check found and did about it."""

    WITHIN = "within limits"
    PARTIAL = "partially closed"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_OPEN = "not open"

    status: str
    reason: str = ""
    margin: Decimal | None = None
    allowed: Decimal | None = None
    close: object | None = None  # the CloseOutcome of the partial close, when one was tried

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status


def post_trade_check(*, position, gateway, equity: Decimal | None = None) -> PostTradeOutcome:
    """Partially close the part of ``position`` whose margin exceeds the allowed margin by more
    than ``partial_close_tolerance_pct`` (forced, reason RISK), rounded down to the step.

    Uses the same ``allowed_margin`` and ``position_margin`` as the sizing, so a trade the engine
    sized itself passes. A close quantity below minQty is skipped, recorded once on the position
    (``skip_reason``), and nothing is sent. ``equity`` None reads it from the exchange.
    """
    position.refresh_from_db()
    if position.status != Position.Status.OPEN or not position.quantity or not position.entry_price:
        return PostTradeOutcome(PostTradeOutcome.NOT_OPEN, f"position is {position.status}")
    profile = risk_profile_for_symbol(symbol=position.symbol)
    if equity is None:
        equity = gateway.fetch_balance().equity
    excess = position_excess(position=position, profile=profile, equity=equity)
    numbers = {"margin": excess.margin, "allowed": excess.allowed}
    if not excess.over_limit:
        return PostTradeOutcome(PostTradeOutcome.WITHIN, **numbers)
    reason = (
        f"margin {excess.margin:.2f} USDT exceeds the allowed {excess.allowed:.2f} USDT by more "
        f"than {profile.partial_close_tolerance_pct} %"
    )
    # An excess that rounds below minQty still goes through position_close, which records the
    # skip once; the rounded quantity keeps that reason stable while equity moves a little.
    close = position_close(
        position=position,
        quantity=excess.close_quantity,
        reason=Position.CloseReason.RISK,
        forced_event=True,
        gateway=gateway,
        actor="risk",
    )
    if close.status == CloseOutcome.SKIPPED:
        return PostTradeOutcome(
            PostTradeOutcome.SKIPPED, f"{reason}; {close.reason}", close=close, **numbers
        )
    if close.ok:
        logger.warning("[Risk] %s %s: %s; %s", position.symbol.name, position.side, reason, close)
        return PostTradeOutcome(PostTradeOutcome.PARTIAL, reason, close=close, **numbers)
    return PostTradeOutcome(
        PostTradeOutcome.FAILED, f"{reason}; close {close}", close=close, **numbers
    )
