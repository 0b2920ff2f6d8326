"""Shared pieces of the operator commands (emergency_close, reconcile, trading)."""

from __future__ import annotations

import getpass
import os


def shell_actor() -> str:
    """Who runs this command, for the audit trail: ``shell:<login>``."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in a bare container
        login = os.environ.get("USER", "unknown")
    return f"shell:{login}"
