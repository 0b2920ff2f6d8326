"""Symbols, filters and leverage brackets, read from paper's own data files.

Besides the six real symbols of ``data/exchange_info.json``, the exchange can list synthetic ones
(:func:`set_extra_symbols`): ``SYN001USDT``, ``SYN002USDT``... with base asset ``SYN001``..., each a
clone of :data:`SYNTHETIC_TEMPLATE`'s filters and leverage brackets. They exist so tests and
benchmarks can hold more positions at once than six symbols allow (one per symbol, one-way mode);
they are not, and are never named like, a real market.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"

# Where the static feed starts each symbol until the control API moves it.
DEFAULT_PRICES: dict[str, Decimal] = {
    "BTCUSDT": Decimal("100000"),
    "ETHUSDT": Decimal("3500"),
    "BNBUSDT": Decimal("964"),
    "XRPUSDT": Decimal("2.5"),
    "DOGEUSDT": Decimal("0.35"),
    "ADAUSDT": Decimal("0.9"),
}
REAL_PRICES = dict(DEFAULT_PRICES)

# The real symbol every synthetic one copies: filters, leverage brackets and candle shape.
SYNTHETIC_TEMPLATE = "ADAUSDT"
SYNTHETIC_PATTERN = re.compile(r"^SYN\d{3,}USDT$")
_extra_symbols = 0


def synthetic_name(index: int) -> str:
    """The ``index``-th synthetic symbol (from 1): ``SYN001USDT``."""
    return f"SYN{index:03d}USDT"


def is_synthetic(name: str) -> bool:
    """Whether ``name`` is one of paper's synthetic symbols, not a real market."""
    return bool(SYNTHETIC_PATTERN.match(name))


def synthetic_price(index: int) -> Decimal:
    """The start price of the ``index``-th synthetic symbol: the template's, 1 % higher per index,
    on the template's tick, so each symbol is told apart by its price."""
    tick = symbols()[SYNTHETIC_TEMPLATE].tick
    return round_to_tick(REAL_PRICES[SYNTHETIC_TEMPLATE] * (1 + Decimal(index) / 100), tick)


def extra_symbols() -> int:
    """How many synthetic symbols this process lists."""
    return _extra_symbols


def set_extra_symbols(count: int) -> list[str]:
    """List ``count`` synthetic symbols (and no more) in this process; return their names.

    The symbol list is one per process and read when an exchange is built: call this before
    building one (``PaperExchangeServer.start(extra_symbols=N)`` does). Paper exchanges running
    in the same process meanwhile keep the list they were built with only if ``count`` is the
    same; run exchanges with different counts one after another.
    """
    global _extra_symbols
    if count < 0:
        raise ValueError(f"extra_symbols must be 0 or more, not {count}")
    names = [synthetic_name(i) for i in range(1, count + 1)]
    if count == _extra_symbols:
        return names
    _extra_symbols = count
    for name in [n for n in DEFAULT_PRICES if is_synthetic(n)]:
        del DEFAULT_PRICES[name]
    for i, name in enumerate(names, start=1):
        DEFAULT_PRICES[name] = synthetic_price(i)
    exchange_info.cache_clear()
    leverage_brackets.cache_clear()
    symbols.cache_clear()
    return names


@dataclass(frozen=True)
class Bracket:
    """One leverage bracket: positions up to ``cap`` notional may use up to ``max_leverage``."""

    number: int
    max_leverage: int
    floor: Decimal
    cap: Decimal
    maint_ratio: Decimal
    cum: Decimal


@dataclass(frozen=True)
class Symbol:
    """A USDT-M perpetual with the filters the engine enforces."""

    name: str
    base: str
    price_precision: int
    quantity_precision: int
    tick: Decimal
    min_price: Decimal
    max_price: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    max_orders: int
    max_algo_orders: int
    min_notional: Decimal
    multiplier_up: Decimal
    multiplier_down: Decimal
    brackets: tuple[Bracket, ...]
    info: dict[str, Any]

    @property
    def max_leverage(self) -> int:
        return self.brackets[0].max_leverage

    def bracket_for(self, notional: Decimal) -> Bracket:
        """Return the bracket a position of ``notional`` (absolute) falls into."""
        for bracket in self.brackets:
            if notional <= bracket.cap:
                return bracket
        return self.brackets[-1]

    def fmt_price(self, value: Decimal) -> str:
        return f"{value:.{self.price_precision}f}"

    def fmt_qty(self, value: Decimal) -> str:
        return f"{value:.{self.quantity_precision}f}"


def _filters(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["filterType"]: f for f in entry["filters"]}


@cache
def exchange_info() -> dict[str, Any]:
    """Return the exchangeInfo document (without our ``_source`` note)."""
    raw = json.loads((DATA_DIR / "exchange_info.json").read_text())
    raw.pop("_source", None)
    template = next(s for s in raw["symbols"] if s["symbol"] == SYNTHETIC_TEMPLATE)
    for i in range(1, _extra_symbols + 1):
        name = synthetic_name(i)
        entry = copy.deepcopy(template)
        entry.update(symbol=name, pair=name, baseAsset=name.removesuffix("USDT"))
        entry["underlyingSubType"] = ["Synthetic"]
        raw["symbols"].append(entry)
    return raw


@cache
def leverage_brackets() -> list[dict[str, Any]]:
    """Return the leverageBracket response body for every symbol."""
    rows = json.loads((DATA_DIR / "leverage_brackets.json").read_text())["brackets"]
    template = next(row for row in rows if row["symbol"] == SYNTHETIC_TEMPLATE)
    for i in range(1, _extra_symbols + 1):
        rows.append({**copy.deepcopy(template), "symbol": synthetic_name(i)})
    return rows


@cache
def symbols() -> dict[str, Symbol]:
    """Return every tradable symbol by its Binance id."""
    brackets = {e["symbol"]: e["brackets"] for e in leverage_brackets()}
    result: dict[str, Symbol] = {}
    for entry in exchange_info()["symbols"]:
        f = _filters(entry)
        name = entry["symbol"]
        result[name] = Symbol(
            name=name,
            base=entry["baseAsset"],
            price_precision=int(entry["pricePrecision"]),
            quantity_precision=int(entry["quantityPrecision"]),
            tick=Decimal(f["PRICE_FILTER"]["tickSize"]),
            min_price=Decimal(f["PRICE_FILTER"]["minPrice"]),
            max_price=Decimal(f["PRICE_FILTER"]["maxPrice"]),
            step=Decimal(f["LOT_SIZE"]["stepSize"]),
            min_qty=Decimal(f["LOT_SIZE"]["minQty"]),
            max_qty=Decimal(f["LOT_SIZE"]["maxQty"]),
            market_step=Decimal(f["MARKET_LOT_SIZE"]["stepSize"]),
            market_min_qty=Decimal(f["MARKET_LOT_SIZE"]["minQty"]),
            market_max_qty=Decimal(f["MARKET_LOT_SIZE"]["maxQty"]),
            max_orders=int(f["MAX_NUM_ORDERS"]["limit"]),
            max_algo_orders=int(f["MAX_NUM_ALGO_ORDERS"]["limit"]),
            min_notional=Decimal(f["MIN_NOTIONAL"]["notional"]),
            multiplier_up=Decimal(f["PERCENT_PRICE"]["multiplierUp"]),
            multiplier_down=Decimal(f["PERCENT_PRICE"]["multiplierDown"]),
            brackets=tuple(
                Bracket(
                    number=int(b["bracket"]),
                    max_leverage=int(b["initialLeverage"]),
                    floor=Decimal(str(b["notionalFloor"])),
                    cap=Decimal(str(b["notionalCap"])),
                    maint_ratio=Decimal(str(b["maintMarginRatio"])),
                    cum=Decimal(str(b["cum"])),
                )
                for b in brackets[name]
            ),
            info=entry,
        )
    return result


def round_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """Round ``price`` to the nearest multiple of ``tick`` (half up)."""
    return (price / tick).quantize(Decimal(1), rounding="ROUND_HALF_UP") * tick
