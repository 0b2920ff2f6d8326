"""Binance's symbol filters as checks: each raises the BinanceError Binance answers with."""

from __future__ import annotations

from decimal import Decimal

from paper.errors import reject
from paper.params import decimals_of
from paper.symbols import Symbol


def check_price(sym: Symbol, price: Decimal, *, stop: bool = False) -> None:
    """PRICE_FILTER and pricePrecision for a limit, stop or trigger price."""
    if price <= 0:
        raise reject(-4006) if stop else reject(-4013)
    if decimals_of(price) > sym.price_precision:
        raise reject(-1111)
    if price < sym.min_price:
        raise reject(-4013)
    if price > sym.max_price:
        raise reject(-4002)
    if price % sym.tick != 0:
        raise reject(-4014)


def check_quantity(sym: Symbol, qty: Decimal, *, market: bool) -> None:
    """LOT_SIZE (MARKET_LOT_SIZE for market orders) and quantityPrecision."""
    if qty <= 0:
        raise reject(-4003)
    if decimals_of(qty) > sym.quantity_precision:
        raise reject(-1111)
    step = sym.market_step if market else sym.step
    if step and qty % step != 0:
        raise reject(-4023)
    if qty < (sym.market_min_qty if market else sym.min_qty):
        raise reject(-4004)
    if qty > (sym.market_max_qty if market else sym.max_qty):
        raise reject(-4005)


def check_notional(sym: Symbol, qty: Decimal, price: Decimal, *, exempt: bool) -> None:
    """MIN_NOTIONAL: reduce-only and closePosition orders are exempt."""
    if not exempt and qty * price < sym.min_notional:
        raise reject(-4164, _plain(sym.min_notional))


def check_percent_price(sym: Symbol, price: Decimal, mark: Decimal) -> None:
    """PERCENT_PRICE: a limit price must stay within the multipliers of the mark price."""
    if price > mark * sym.multiplier_up:
        raise reject(-4016)
    if price < mark * sym.multiplier_down:
        raise reject(-4024)


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"
