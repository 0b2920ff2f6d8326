"""Who may press the red buttons."""

from __future__ import annotations

from typing import Any

# Superusers always pass ``has_perm``; anyone else needs this permission granted explicitly
# (it exists once ``trading.Position`` declares it in ``Meta.permissions``).
EMERGENCY_CLOSE_PERMISSION = "trading.emergency_close"


def may_emergency_close(user: Any) -> bool:
    """True for an active staff user who is a superuser or holds ``trading.emergency_close``."""
    return bool(user.is_active and user.is_staff and user.has_perm(EMERGENCY_CLOSE_PERMISSION))
