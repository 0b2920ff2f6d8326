"""Read request parameters the way Binance does: strict, with Binance's codes on bad input."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from paper.errors import DECIMAL_RANGE, reject
from paper.symbols import Symbol, symbols

_DECIMAL = re.compile(DECIMAL_RANGE)
_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


class Params:
    """The parameters of one request, read with Binance's validation and error codes."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self.values = {k: ("" if v is None else str(v)) for k, v in values.items()}

    def __contains__(self, name: str) -> bool:
        return self.values.get(name, "") != ""

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name, "")
        return value if value != "" else default

    def required(self, name: str) -> str:
        value = self.values.get(name, "")
        if value == "":
            raise reject(-1102, name)
        return value

    def decimal(self, name: str, *, required: bool = False) -> Decimal | None:
        raw = self.required(name) if required else self.text(name)
        if raw is None:
            return None
        if not _DECIMAL.match(raw):
            raise reject(-1100, name, DECIMAL_RANGE)
        try:
            return Decimal(raw)
        except InvalidOperation as e:
            raise reject(-1100, name, DECIMAL_RANGE) from e

    def integer(self, name: str, default: int | None = None) -> int | None:
        raw = self.text(name)
        if raw is None:
            return default
        if not re.fullmatch(r"-?[0-9]{1,19}", raw):
            raise reject(-1100, name, "^-?[0-9]{1,19}$")
        return int(raw)

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() not in ("true", "false"):
            raise reject(-1130, name)
        return raw.lower() == "true"

    def symbol(self, *, required: bool = True) -> Symbol | None:
        raw = self.required("symbol") if required else self.text("symbol")
        if raw is None:
            return None
        sym = symbols().get(raw)
        if sym is None:
            raise reject(-1121)
        return sym

    def client_id(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is not None and not _CLIENT_ID.match(raw):
            raise reject(-4015)
        return raw


def decimals_of(value: Decimal) -> int:
    """Return how many decimals ``value`` really uses (trailing zeros do not count)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -int(exponent))
