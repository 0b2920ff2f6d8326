"""The active rules checked again just before an order is sent.

Every writer validates (admin, services, ``loaddata``), and the database refuses what must never
be stored; this is the last line for anything that still slipped in (a raw SQL edit, a fixture
loaded by an older version, a symbol's bracket lowered by the exchange). An entry on an invalid
rule is refused with the rule's own message, before any request.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError


def check_active_rules(*, symbol: Any, profile: Any) -> str | None:
    """The denial reason when ``symbol`` or the ``profile`` it trades under is invalid."""
    for rule in (profile, symbol):
        try:
            rule.full_clean()
        except ValidationError as e:
            return f"{rule._meta.verbose_name} {rule} is invalid: {'; '.join(e.messages)}"
    if profile.leverage > symbol.max_leverage:
        return (
            f"leverage {profile.leverage}x of profile {profile.name} exceeds {symbol.name}'s "
            f"maximum of {symbol.max_leverage}x"
        )
    return None
