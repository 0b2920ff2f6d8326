"""The notification port: how a lower layer (the guard, the order path) raises an alert without
importing the monitoring app above it.

Monitoring registers its ``alert_raise`` when Django starts (``MonitoringConfig.ready``). Until
then, or if it never does, an alert is written to the log at ERROR level so nothing is lost
silently.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class AlertSink(Protocol):
    def __call__(
        self,
        *,
        key: str,
        severity: str,
        message: str,
        symbol: Any | None = None,
        repeat_seconds: int | None = None,
    ) -> Any: ...


_sink: AlertSink | None = None


def alert_sink_register(sink: AlertSink) -> None:
    """Route every alert to ``sink`` (monitoring's ``alert_raise``)."""
    global _sink
    _sink = sink


def alert_raise(
    *,
    key: str,
    severity: str,
    message: str,
    symbol: Any | None = None,
    repeat_seconds: int | None = None,
) -> Any:
    """Raise an alert through the registered sink; returns what the sink returns."""
    if _sink is None:
        logger.error("[Alert] %s (%s, no alert sink registered): %s", key, severity, message)
        return None
    return _sink(
        key=key, severity=severity, message=message, symbol=symbol, repeat_seconds=repeat_seconds
    )
