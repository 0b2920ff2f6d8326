"""What the arena logged during a test, apart from the paper exchange's and ccxt's own lines."""

from __future__ import annotations

import logging

import pytest


def app_log_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    """What arena itself logged (not the paper exchange's or ccxt's own lines)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= level and r.name.split(".")[0] in ("trading", "monitoring", "risk")
    ]
