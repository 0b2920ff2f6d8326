"""Turn a wanted quantity or price into one the exchange accepts, or say clearly why not.

Every caller (sizing, entries, stops, partial closes, the guard) goes through these functions,
so a quantity or price that Binance would reject for precision or size is never sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class SymbolFilters:
    """The exchange filters of one symbol that shape an order."""

    symbol: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    price_precision: int
    quantity_precision: int


class ExitTooClose(ValueError):
    """A take-profit or stop-loss distance is under one tick: the entry is refused."""


@dataclass(frozen=True)
class QuantityCheck:
    """A quantity ready to send, or the reason it must not be sent."""

    quantity: Decimal
    refusal: str | None = None

    @property
    def ok(self) -> bool:
        return self.refusal is None


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` down to a multiple of ``step`` (never up, so never more than wanted)."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    steps = (value / step).to_integral_value(rounding=ROUND_FLOOR)
    return _normalize(steps * step, step)


def round_quantity(quantity: Decimal, filters: SymbolFilters, *, market: bool) -> Decimal:
    """Round a quantity down to the step that applies to a market or a limit/stop order."""
    step = filters.market_step_size if market else filters.step_size
    rounded = floor_to_step(quantity, step)
    return rounded.quantize(Decimal(1).scaleb(-filters.quantity_precision), rounding=ROUND_FLOOR)


def check_quantity(
    quantity: Decimal,
    price: Decimal,
    filters: SymbolFilters,
    *,
    market: bool,
    reduce_only: bool = False,
) -> QuantityCheck:
    """Round ``quantity`` down and check it against the size filters at ``price``.

    Reduce-only orders are exempt from the minimum notional, as on Binance.
    """
    rounded = round_quantity(quantity, filters, market=market)
    min_qty = filters.market_min_qty if market else filters.min_qty
    max_qty = filters.market_max_qty if market else filters.max_qty
    if rounded <= 0 or rounded < min_qty:
        return QuantityCheck(
            rounded, f"quantity {quantity} rounds to {rounded}, below minQty {min_qty}"
        )
    if rounded > max_qty:
        return QuantityCheck(rounded, f"quantity {rounded} above maxQty {max_qty}")
    notional = rounded * price
    if not reduce_only and notional < filters.min_notional:
        return QuantityCheck(
            rounded,
            f"notional {notional.normalize():f} below minNotional {filters.min_notional} "
            f"(quantity {rounded} @ {price})",
        )
    return QuantityCheck(rounded)


def round_price_down(price: Decimal, filters: SymbolFilters) -> Decimal:
    """Round a price down to the tick."""
    return _to_tick(price, filters, ROUND_FLOOR)


def round_price_up(price: Decimal, filters: SymbolFilters) -> Decimal:
    """Round a price up to the tick."""
    return _to_tick(price, filters, ROUND_CEILING)


def round_price_nearest(price: Decimal, filters: SymbolFilters) -> Decimal:
    """Round a price to the nearest tick (half up): an average fill price shown on the tick."""
    return _to_tick(price, filters, ROUND_HALF_UP)


def exit_prices(
    *,
    side: str,
    entry_price: Decimal,
    take_profit_pct: Decimal,
    stop_loss_pct: Decimal,
    filters: SymbolFilters,
) -> tuple[Decimal, Decimal]:
    """Return (take-profit, stop-loss) prices on the tick for a LONG or SHORT position.

    Both are rounded toward the entry: the stop never lies further away (more loss) than the
    rules allow, and the target never asks for more than they set.
    """
    tp_distance = entry_price * take_profit_pct / Decimal(100)
    sl_distance = entry_price * stop_loss_pct / Decimal(100)
    if side == "LONG":
        take_profit = round_price_down(entry_price + tp_distance, filters)
        stop_loss = round_price_up(entry_price - sl_distance, filters)
    elif side == "SHORT":
        take_profit = round_price_up(entry_price - tp_distance, filters)
        stop_loss = round_price_down(entry_price + sl_distance, filters)
    else:
        raise ValueError(f"side must be LONG or SHORT, got {side!r}")
    if take_profit == entry_price or stop_loss == entry_price:
        raise ExitTooClose(
            f"{filters.symbol}: take-profit {take_profit_pct} % or stop-loss {stop_loss_pct} % "
            f"of {entry_price} is less than one tick ({filters.tick_size})"
        )
    return take_profit, stop_loss


def _to_tick(price: Decimal, filters: SymbolFilters, rounding: str) -> Decimal:
    ticks = (price / filters.tick_size).to_integral_value(rounding=rounding)
    rounded = _normalize(ticks * filters.tick_size, filters.tick_size)
    return rounded.quantize(Decimal(1).scaleb(-filters.price_precision), rounding=rounding)


def _normalize(value: Decimal, step: Decimal) -> Decimal:
    """Drop trailing zeros beyond the step's own decimals (0.0110 -> 0.011 for step 0.001)."""
    exponent = step.normalize().as_tuple().exponent
    return value.quantize(Decimal(1).scaleb(min(exponent, 0)))
