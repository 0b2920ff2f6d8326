"""Trade events, alerts and the log lines' number formatting of the order path."""

from __future__ import annotations

import logging
from decimal import Decimal

from core.formatting import money_text
from core.notify import alert_raise
from trading.locks import (
    db_write_lock,
)
from trading.models import Position, Symbol, TradeEvent

logger = logging.getLogger(__name__)


def _plain(value: Decimal | None) -> str:
    """A stored decimal as a trader writes it: 0.011, not 0.0110000000."""
    return "-" if value is None else f"{value.normalize():f}"


def _event(
    *, symbol: Symbol, position: Position | None, kind: str, message: str, actor: str = "bot"
) -> None:
    with db_write_lock:
        TradeEvent.objects.create(
            symbol=symbol, position=position, kind=kind, message=message[:500], actor=actor[:150]
        )


def _alert(*, key: str, message: str, symbol: Symbol | None = None) -> None:
    """Log at ERROR and raise a monitoring alert."""
    logger.error("[Alert] %s", message)
    # An alert is a courtesy on top of the log line: it must never break the order path.
    try:
        alert_raise(key=key, severity="critical", message=message, symbol=symbol)
    except Exception:
        logger.exception("could not raise alert %s", key)


def _fmt(value: Decimal | None) -> str:
    """A price for the log: plain digits, at least one decimal (100000.0, 959.18)."""
    if value is None:
        return "?"
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


def _fmt_qty(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _fmt_money(value: Decimal | None) -> str:
    return "?" if value is None else money_text(value)
