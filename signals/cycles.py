"""One trade cycle of one symbol: a decision, then at most one open or close.

A LONG or SHORT decision while a position is open in the same direction is refused as a
duplicate. In the opposite direction the open position is closed (reason SIGNAL, so the minimum
holding period applies) and nothing new is opened in the same cycle: the reversal signal says the
current trade is wrong, which is reason enough to leave it, but a fresh entry should come from a
fresh decision on the next cycle, after the close is confirmed and with the equity it left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.errors import ArenaError
from exchange.gateway import ExchangeGateway
from signals.services import signal_for_symbol
from signals.types import Decision
from trading.entry_state import EntryReadAhead, HeldSymbolState
from trading.gateway import exchange_gateway
from trading.locks import DEFAULT_TTL_SECONDS, SymbolBusy, symbol_lock
from trading.models import Position, Symbol
from trading.selectors import position_open_for_symbol
from trading.services import (
    CloseOutcome,
    OpenOutcome,
    position_close,
    position_entry_resolve,
    position_open,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleOutcome:
    """What one cycle decided and did. ``status`` is the open or close outcome's status, or
    "held" (nothing to do), "refused" or "failed"."""

    HELD = "held"
    REFUSED = "refused"
    FAILED = "failed"

    symbol: str
    action: str  # the decision: LONG, SHORT, FLAT or HOLD ("" when none was reached)
    status: str
    reason: str
    opened: OpenOutcome | None = None
    closed: CloseOutcome | None = None

    @property
    def failed(self) -> bool:
        """True when something went wrong (as opposed to a deliberate refusal)."""
        return self.status in (CycleOutcome.FAILED, CloseOutcome.REJECTED)

    def __str__(self) -> str:
        return f"{self.symbol} {self.action or '-'}: {self.status} — {self.reason}"


def trade_cycle_run(
    *,
    symbol_id: int,
    signal: Decision | None = None,
    gateway: ExchangeGateway | None = None,
) -> CycleOutcome:
    """Run one cycle of ``symbol_id`` under its lock, with ``signal`` or the symbol's agent."""
    symbol = Symbol.objects.get(pk=symbol_id)
    if not symbol.enabled:
        return _done(CycleOutcome(symbol.name, "", CycleOutcome.REFUSED, "symbol is disabled"))
    gateway = gateway or exchange_gateway()
    try:
        with symbol_lock(symbol.pk, DEFAULT_TTL_SECONDS):
            _entry_left_opening_resolve(symbol=symbol, gateway=gateway)
            # With no position open, the decision may be an entry: what the entry needs from
            # the exchange is read on another thread while the agent decides, so an entry's
            # first request after the decision is the entry itself.
            ahead = None
            if position_open_for_symbol(symbol=symbol) is None:
                ahead = EntryReadAhead(symbol=symbol, gateway=gateway)
            try:
                decision = signal or _decide(symbol=symbol, gateway=gateway)
            finally:
                held = ahead.result() if ahead is not None else None
            return _done(_act(symbol=symbol, decision=decision, gateway=gateway, held=held))
    except SymbolBusy as e:
        return _done(CycleOutcome(symbol.name, "", CycleOutcome.REFUSED, f"symbol busy: {e}"))
    except ArenaError as e:
        return _done(CycleOutcome(symbol.name, "", CycleOutcome.FAILED, str(e)))


def _entry_left_opening_resolve(*, symbol: Symbol, gateway: ExchangeGateway) -> None:
    """An entry of an earlier cycle whose answer was lost is settled from the exchange first,
    so a position that never opened does not block the symbol until a restart."""
    position = position_open_for_symbol(symbol=symbol)
    if position is None or position.status != Position.Status.OPENING:
        return
    outcome = position_entry_resolve(position=position, gateway=gateway, actor="cycle")
    logger.warning("[Cycle] %s: entry left OPENING resolved: %s", symbol.name, outcome)


def _decide(*, symbol: Symbol, gateway: ExchangeGateway) -> Decision:
    return signal_for_symbol(symbol=symbol, gateway=gateway)


def _act(
    *,
    symbol: Symbol,
    decision: Decision,
    gateway: ExchangeGateway,
    held: HeldSymbolState | None = None,
) -> CycleOutcome:
    action = decision.action
    if action == "HOLD":
        return CycleOutcome(symbol.name, action, CycleOutcome.HELD, decision.reason)
    position = position_open_for_symbol(symbol=symbol)
    if action == "FLAT":
        if position is None:
            return CycleOutcome(symbol.name, action, CycleOutcome.HELD, "no open position")
        return _close(
            symbol=symbol,
            action=action,
            position=position,
            gateway=gateway,
            reason=f"signal FLAT: {decision.reason}",
        )
    if position is not None and position.side == action:
        return CycleOutcome(
            symbol.name, action, CycleOutcome.REFUSED, f"a {action} position is already open"
        )
    if position is not None:
        return _close(
            symbol=symbol,
            action=action,
            position=position,
            gateway=gateway,
            reason=f"signal reversed to {action}: {decision.reason}; the next cycle may enter",
        )
    opened = position_open(
        symbol=symbol, side=action, reason=decision.reason, gateway=gateway, held=held
    )
    return CycleOutcome(
        symbol.name,
        action,
        opened.status,
        opened.reason if not opened.ok else str(opened),
        opened=opened,
    )


def _close(
    *, symbol: Symbol, action: str, position: Position, gateway: ExchangeGateway, reason: str
) -> CycleOutcome:
    closed = position_close(position=position, reason=Position.CloseReason.SIGNAL, gateway=gateway)
    detail = reason if closed.ok else f"{closed.reason} ({reason})"
    return CycleOutcome(symbol.name, action, closed.status, detail, closed=closed)


def _done(outcome: CycleOutcome) -> CycleOutcome:
    logger.info("[Cycle] %s", outcome)
    return outcome
