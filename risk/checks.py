"""Pre-trade checks: pure functions that return a denial reason, or None when the trade may go.

They take plain values (the caller reads the database and the exchange), so each is a one-line
test and the reason stored with a refusal is exactly what the check said.
"""

from __future__ import annotations

from decimal import Decimal


def check_kill_switch(*, enabled: bool, reason: str = "") -> str | None:
    """Deny every entry while the kill switch is off."""
    if enabled:
        return None
    return f"trading is halted (kill switch off{': ' + reason if reason else ''})"


def check_one_position_per_symbol(
    *, symbol: str, open_in_db: bool, open_on_exchange: bool
) -> str | None:
    """Deny an entry in a symbol that already has a position, here or on the exchange."""
    if open_in_db:
        return f"a position in {symbol} is already open"
    if open_on_exchange:
        return f"the exchange already has a position in {symbol} (not recorded here)"
    return None


def check_max_open_positions(*, open_positions: int, max_open_positions: int) -> str | None:
    """Deny an entry once the most positions allowed at once are open."""
    if open_positions >= max_open_positions:
        return f"{open_positions} positions open, the most allowed is {max_open_positions}"
    return None


def check_free_margin(*, available: Decimal, margin: Decimal) -> str | None:
    """Deny an entry whose margin the available balance does not cover."""
    if available < margin:
        return (
            f"available balance {_plain(available)} USDT does not cover the margin "
            f"{_plain(margin.quantize(Decimal('0.01')))} USDT"
        )
    return None


def check_daily_loss(*, realized_today: Decimal, limit: Decimal | None) -> str | None:
    """Deny entries once today's realized loss reaches the limit (None = no limit)."""
    if limit is None:
        return None
    loss = -realized_today
    if loss >= limit:
        return (
            f"realized loss today {_plain(loss)} USDT reached the daily limit {_plain(limit)} USDT"
        )
    return None


def check_pnl_known(*, unknown: int, limit: Decimal | None) -> str | None:
    """Deny entries while a daily loss limit is set and the PnL of a closed position is not
    known yet (its fills are unreadable): the limit cannot be judged on a missing number."""
    if limit is None or not unknown:
        return None
    return (
        f"the PnL of {unknown} closed position(s) is not known yet (fills unreadable): no new "
        "entry until it is, under the daily loss limit"
    )


def _plain(value: Decimal) -> str:
    """Without the database column's padding zeros: 100.0000000000 -> 100."""
    text = format(value.normalize(), "f")
    return text


# Beat computes the next run from an interval; 10^14 seconds overflowed its scheduler and stopped
# every schedule. A week is far beyond anything the bot runs on.
MAX_SCHEDULE_INTERVAL_SECONDS = 7 * 24 * 3600
_PERIOD_SECONDS = {
    "days": Decimal(86400),
    "hours": Decimal(3600),
    "minutes": Decimal(60),
    "seconds": Decimal(1),
    "microseconds": Decimal("0.000001"),
}


def check_schedule_interval(*, every: int | None, period: str | None) -> str | None:
    """Refuse a schedule interval longer than a week (``period`` as django-celery-beat names it)."""
    if every is None or period not in _PERIOD_SECONDS:
        return None
    if every * _PERIOD_SECONDS[period] > MAX_SCHEDULE_INTERVAL_SECONDS:
        return f"At most {MAX_SCHEDULE_INTERVAL_SECONDS} seconds (7 days)."
    return None
