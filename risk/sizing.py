"""The one sizing function and the one exposure function.

Pre-trade sizing and the post-trade check both use ``allowed_margin`` and ``position_margin``, so
a trade the engine sized itself never fails its own post-trade check: sizing rounds the quantity
down (its margin is at most the allowed margin at the sizing price), and the check allows
``partial_close_tolerance_pct`` on top for entry slippage and fees.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from exchange.rounding import SymbolFilters, check_quantity, round_quantity

HUNDRED = Decimal(100)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Sizing:
    """The quantity to send for an entry, or why there is none."""

    margin: Decimal  # the margin the rules allow for this trade
    quantity: Decimal  # rounded down to the market step; 0 when refused
    refusal: str | None = None
    fill_price: Decimal = Decimal(0)  # the worst fill price sized for (price + slippage)

    @property
    def ok(self) -> bool:
        return self.refusal is None


def allowed_margin(*, equity: Decimal, risk_pct: Decimal, max_risk_usd: Decimal) -> Decimal:
    """margin = min(equity x risk_pct / 100, max_risk_usd) in whole cents; never negative.

    A margin budget is a USDT amount, counted in cents as traders read it: 30 % of 1833.33 is
    549.999, which is 550.00, not a budget one thousandth of a cent too small to buy 0.011 BTC
    at 100,000. Half a cent at most, far inside the post-trade tolerance.
    """
    raw = min(equity * risk_pct / HUNDRED, max_risk_usd)
    return max(Decimal(0), raw.quantize(CENT, rounding=ROUND_HALF_UP))


def position_size(
    *,
    equity: Decimal,
    price: Decimal,
    leverage: int,
    risk_pct: Decimal,
    max_risk_usd: Decimal,
    filters: SymbolFilters,
    slippage_pct: Decimal = Decimal(0),
) -> Sizing:
    """Size an entry: quantity = margin x leverage / fill price, rounded down to the market step,
    where the fill price is ``price`` raised by ``slippage_pct``: a market order fills above
    the price read before it (a buy after a move up; a sell's margin grows with its fill price
    too), so margin <= allowed margin holds on any fill up to that bound.

    Refused (with the reason) when the rounded quantity is below minQty or its notional below
    minNotional — never rounded up to make it fit.
    """
    if price <= 0:
        return Sizing(Decimal(0), Decimal(0), f"no usable price ({price})")
    if slippage_pct < 0:
        raise ValueError(f"slippage_pct must not be negative, got {slippage_pct}")
    margin = allowed_margin(equity=equity, risk_pct=risk_pct, max_risk_usd=max_risk_usd)
    if margin <= 0:
        return Sizing(margin, Decimal(0), f"no margin allowed (equity {equity})")
    fill_price = price * (1 + slippage_pct / HUNDRED)
    wanted = margin * leverage / fill_price
    check = check_quantity(wanted, price, filters, market=True)
    if not check.ok:
        return Sizing(margin, Decimal(0), check.refusal, fill_price)
    return Sizing(margin, check.quantity, fill_price=fill_price)


def position_margin(*, quantity: Decimal, entry_price: Decimal, leverage: int) -> Decimal:
    """A position's margin: quantity x entry price / leverage."""
    return quantity * entry_price / leverage


@dataclass(frozen=True)
class Excess:
    """How far a position's margin is over the allowed margin, and what to close about it."""

    margin: Decimal
    allowed: Decimal
    limit: Decimal  # allowed x (1 + tolerance): above this the excess is closed
    close_quantity: Decimal  # rounded down to the market step; 0 when nothing is to be closed

    @property
    def over_limit(self) -> bool:
        return self.margin > self.limit


def margin_excess(
    *,
    quantity: Decimal,
    entry_price: Decimal,
    leverage: int,
    equity: Decimal,
    risk_pct: Decimal,
    max_risk_usd: Decimal,
    tolerance_pct: Decimal,
    filters: SymbolFilters,
) -> Excess:
    """Compare a position's margin with the allowed margin (the post-trade check's arithmetic).

    Over the tolerance, the quantity to close brings the margin back to the allowed margin,
    rounded down to the step (so it never closes more than the excess).
    """
    margin = position_margin(quantity=quantity, entry_price=entry_price, leverage=leverage)
    allowed = allowed_margin(equity=equity, risk_pct=risk_pct, max_risk_usd=max_risk_usd)
    limit = allowed * (1 + tolerance_pct / HUNDRED)
    close = Decimal(0)
    if margin > limit and entry_price > 0:
        excess_quantity = (margin - allowed) * leverage / entry_price
        close = min(round_quantity(excess_quantity, filters, market=True), quantity)
    return Excess(margin=margin, allowed=allowed, limit=limit, close_quantity=close)


def position_excess(*, position, profile, equity: Decimal) -> Excess:
    """``margin_excess`` for a stored position under its risk profile."""
    return margin_excess(
        quantity=position.quantity,
        entry_price=position.entry_price,
        leverage=position.leverage,
        equity=equity,
        risk_pct=profile.risk_pct,
        max_risk_usd=profile.max_risk_usd,
        tolerance_pct=profile.partial_close_tolerance_pct,
        filters=position.symbol.filters,
    )
