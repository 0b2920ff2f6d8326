"""Where Binance's documentation and its observed behaviour differ, the paper exchange does both.

Each option names the two sides; the default is the side that is harder on a bot. Set them with
``python manage.py paper_exchange --option NAME=VALUE`` (repeatable), with
``PaperExchangeServer(options={...})``, with the ``PAPER_OPTIONS`` environment variable
(``"exit_on_flat=expire,oversize_reduce_only=shrink"``, read by :mod:`paper.testing` and the
command) or at run time with ``POST /paper/v1/options`` (``{"exit_on_flat": "expire"}``);
``POST /paper/v1/reset`` puts back the options the exchange started with.

==========================  ===============  =================================================
Option                      Values           Meaning
==========================  ===============  =================================================
``exit_on_flat``            ``keep``         When a position goes flat its other closePosition
                            (default),       order stays open (reported by users) or is
                            ``expire``       EXPIRED by the system (Binance's algo-order docs).
``oversize_reduce_only``    ``reject``       A reduce-only order larger than the position is
                            (default),       rejected with -2022 (documented) or shrunk to the
                            ``shrink``       position (observed).
``close_without_position``  ``reject``       A closePosition order with no position and no
                            (default),       open order on the symbol answers -4509 (observed
                            ``accept``       live) or is accepted and waits.
``stop_spread_bps``         ``0`` .. ``1000``  Basis points a triggered stop's market order fills
                            (default ``0``)  beyond the price the path reached, for stress: even
                                             at 0 a stop fills at the price the path reached
                                             (a gap's price, the next step of a fast move),
                                             never at its trigger.
``market_depth``            USDT, > 0        Notional resting on each price level of the book
                            (default         (levels ``depth_step_bps`` apart); a market order
                            ``250000``)      larger than one level walks the book.
``depth_step_bps``          ``0`` .. ``100`` Distance between book levels in basis points (at
                            (default ``1``)  least one tick).
==========================  ===============  =================================================

The bot's order-path, guard and emergency tests run under either side of every option through
``PAPER_OPTIONS``, which the tests' paper exchange reads at start, e.g.::

    export PAPER_OPTIONS=exit_on_flat=expire,oversize_reduce_only=shrink,\
    close_without_position=accept
    .venv/bin/pytest tests/trading tests/guard tests/operator/test_emergency_close.py
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

CHOICES: dict[str, tuple[str, ...]] = {
    "exit_on_flat": ("keep", "expire"),
    "oversize_reduce_only": ("reject", "shrink"),
    "close_without_position": ("reject", "accept"),
}
RANGES: dict[str, tuple[Decimal, Decimal]] = {
    "stop_spread_bps": (Decimal(0), Decimal(1000)),
    "market_depth": (Decimal("0.00000001"), Decimal("1e15")),
    "depth_step_bps": (Decimal(0), Decimal(100)),
}


@dataclass(frozen=True)
class Options:
    """The paper exchange's behaviour where Binance's docs and live answers differ."""

    exit_on_flat: str = "keep"
    oversize_reduce_only: str = "reject"
    close_without_position: str = "reject"
    stop_spread_bps: Decimal = Decimal(0)
    market_depth: Decimal = Decimal(250_000)
    depth_step_bps: Decimal = Decimal(1)

    def updated(self, changes: dict[str, Any]) -> Options:
        """Return a copy with ``changes`` applied; ValueError names a bad name or value."""
        values: dict[str, Any] = {}
        for name, raw in changes.items():
            if name in CHOICES:
                value = str(raw)
                if value not in CHOICES[name]:
                    raise ValueError(f"{name} must be one of {', '.join(CHOICES[name])}")
                values[name] = value
            elif name in RANGES:
                values[name] = _decimal_in(name, raw, *RANGES[name])
            else:
                raise ValueError(f"unknown option {name!r}")
        return replace(self, **values)

    def to_json(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


def _decimal_in(name: str, raw: object, low: Decimal, high: Decimal) -> Decimal:
    if isinstance(raw, bool):
        raise ValueError(f"{name} must be a number")
    try:
        value = Decimal(str(raw))
    except InvalidOperation as e:
        raise ValueError(f"{name} must be a number") from e
    if not value.is_finite() or not low <= value <= high:
        raise ValueError(f"{name} must be a finite number from {low} to {high}")
    return value


def parse_pairs(text: str) -> dict[str, str]:
    """``"a=1,b=2"`` (or one ``a=1``) as a dict; ValueError on a pair without ``=``."""
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"option {part!r} is not NAME=VALUE")
        pairs[name.strip()] = value.strip()
    return pairs


def from_env() -> Options:
    """The options in ``PAPER_OPTIONS`` (defaults when unset)."""
    return Options().updated(parse_pairs(os.environ.get("PAPER_OPTIONS", "")))
