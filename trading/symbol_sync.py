"""The symbols' exchange filters, synced from exchangeInfo and the leverage brackets."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.utils import timezone

from exchange.gateway import (
    ExchangeGateway,
)
from risk.selectors import NoActiveRiskProfile, risk_profile_for_symbol
from risk.services import rule_save
from trading.gateway import exchange_gateway
from trading.models import Symbol
from trading.services.events import _alert, _fmt_qty

logger = logging.getLogger(__name__)


SYNCED_FIELDS = (
    "tick_size",
    "step_size",
    "min_qty",
    "max_qty",
    "market_step_size",
    "market_min_qty",
    "market_max_qty",
    "min_notional",
    "price_precision",
    "quantity_precision",
    "max_leverage",
)


@dataclass(frozen=True)
class SymbolSync:
    """What ``symbol_sync_filters`` did to one symbol."""

    symbol: str
    changes: tuple[tuple[str, str, str], ...] = ()  # (field, old, new)
    error: str = ""  # the exchange's filters fail our validation: nothing saved
    missing: bool = False  # known here, not listed (or not trading) on the exchange
    conflict: str = ""  # saved, but a rule now conflicts with it: the symbol was disabled

    def __str__(self) -> str:
        if self.missing:
            return f"{self.symbol}: not trading on the exchange (left as is)"
        if self.error:
            return f"{self.symbol}: NOT UPDATED: {self.error}"
        if not self.changes:
            return f"{self.symbol}: unchanged"
        text = f"{self.symbol}: " + ", ".join(f"{f}: {o} → {n}" for f, o, n in self.changes)
        return f"{text} (DISABLED: {self.conflict})" if self.conflict else text


def symbol_sync_filters(
    *, gateway: ExchangeGateway | None = None, actor: str = "sync_symbols"
) -> list[SymbolSync]:
    """Read every known symbol's filters from the exchange (exchangeInfo + leverageBracket),
    save what changed with a RuleChange row per field, and stamp ``filters_synced_at``."""
    gateway = gateway or exchange_gateway()
    rules = {r.symbol: r for r in gateway.fetch_symbol_rules()}
    now = timezone.now()
    results = []
    for symbol in Symbol.objects.order_by("name"):
        rule = rules.get(symbol.name)
        if rule is None:
            results.append(SymbolSync(symbol.name, missing=True))
            continue
        changes = []
        for name in SYNCED_FIELDS:
            old, new = getattr(symbol, name), getattr(rule, name)
            if old is None or Decimal(old) != Decimal(new):
                field = Symbol._meta.get_field(name)
                if getattr(field, "decimal_places", None) is not None:
                    # Stored at the column's scale, so the history compares like with like.
                    new = Decimal(new).quantize(Decimal(1).scaleb(-field.decimal_places))
                changes.append((name, _plain_text(old), _plain_text(new)))
                setattr(symbol, name, new)
        symbol.filters_synced_at = now
        # The exchange's filters are stored whatever our rules say (stale ticks and steps get
        # orders rejected); a leverage the exchange no longer allows disables the symbol instead.
        conflict = _sync_leverage_conflict(symbol=symbol)
        if conflict:
            changes.append(("enabled", "True", "False"))
            symbol.enabled = False
        try:
            rule_save(instance=symbol, actor=actor)
        except ValidationError as e:
            symbol.refresh_from_db()
            results.append(SymbolSync(symbol.name, error="; ".join(e.messages)))
            continue
        if conflict:
            _alert(
                key=f"sync.leverage_conflict.{symbol.name}",
                message=f"{symbol.name} DISABLED by {actor}: {conflict}",
                symbol=symbol,
            )
        results.append(SymbolSync(symbol.name, tuple(changes), conflict=conflict))
    return results


def _sync_leverage_conflict(*, symbol: Symbol) -> str:
    """Why ``symbol`` (its new filters set, not saved) cannot stay enabled; empty when it can."""
    if not symbol.enabled:
        return ""
    try:
        profile = risk_profile_for_symbol(symbol=symbol)
    except NoActiveRiskProfile:
        return ""
    if profile.leverage <= symbol.max_leverage:
        return ""
    owner = "its own profile" if symbol.risk_profile_id else "the active profile"
    return (
        f"the exchange's maximum leverage is now {symbol.max_leverage}x, below the "
        f"{profile.leverage}x of {owner} {profile.name}: lower that profile's leverage to "
        f"{symbol.max_leverage}x or less (or give {symbol.name} a profile of its own that fits), "
        "then enable the symbol again"
    )


def _plain_text(value: object) -> str:
    if isinstance(value, Decimal):
        return _fmt_qty(value)
    return "" if value is None else str(value)
