"""Positions and orders in valid states, made as the bot makes them: through the order path on the
paper exchange, or (``backdate``) aged in the database instead of waited for."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from exchange.gateway import ExchangeGateway
from risk.models import RiskProfile
from trading.models import Order, Position, ProtectionState, Symbol
from trading.services import position_open


def open_long(*, symbol: Symbol, gateway: ExchangeGateway) -> Position:
    """Open a protected LONG through the order path, as a trade cycle does."""
    outcome = position_open(symbol=symbol, side="LONG", reason="test", gateway=gateway)
    assert outcome.ok, outcome
    return outcome.position


def open_on_every_symbol(*, gateway: ExchangeGateway, count: int) -> list[Position]:
    """Open a LONG in ``count`` symbols (the paper exchange lists six), each one protected."""
    RiskProfile.objects.filter(is_active=True).update(
        max_open_positions=6, risk_pct=Decimal("5"), max_risk_usd=Decimal("100")
    )
    Symbol.objects.update(enabled=True)
    symbols = list(Symbol.objects.order_by("id"))[:count]
    assert len(symbols) == count, "the paper exchange has fewer symbols"
    return [open_long(symbol=symbol, gateway=gateway) for symbol in symbols]


def open_position_by_name(symbol: str, side: str) -> Position:
    """Open a protected position on ``symbol`` (its name) with the default gateway, as a trade
    cycle would."""
    outcome = position_open(symbol=Symbol.objects.get(name=symbol), side=side, reason="test entry")
    assert outcome.ok, outcome
    return outcome.position


def backdate(position: Position, *, seconds: float) -> None:
    """Make ``position`` and its orders look ``seconds`` older: the guard's debounce and the
    reconcile grace period have passed, without the test waiting for them."""
    delta = timedelta(seconds=seconds)
    Position.objects.filter(pk=position.pk).update(opened_at=position.opened_at - delta)
    for order in Order.objects.filter(position=position):
        Order.objects.filter(pk=order.pk).update(
            created_at=order.created_at - delta, updated_at=order.updated_at - delta
        )
    for state in ProtectionState.objects.filter(next_attempt_at__isnull=False):
        ProtectionState.objects.filter(pk=state.pk).update(
            next_attempt_at=state.next_attempt_at - delta
        )
