"""Fixtures of the fault-injection tests: the order path against a paper exchange that misbehaves.

The gateway here has a 1 s client timeout (so a held-back answer is given up on quickly) and a
retry policy whose waits are recorded instead of slept; ccxt's own throttle is off because the
paper exchange counts weight itself. ``btc_market``, ``btc`` and ``sleeps`` are in
``tests.support.plugins.markets``; the helpers in ``tests.support.exchange`` and
``tests.support.factories``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from exchange.gateway import ExchangeGateway
from tests.support.exchange import (
    CLIENT_TIMEOUT_SECONDS,
    SleepRecorder,
    make_gateway,
    no_filter_rejections,
)


@pytest.fixture
def short_timeout(settings: Any) -> None:
    settings.EXCHANGE_TIMEOUT_SECONDS = CLIENT_TIMEOUT_SECONDS


@pytest.fixture
def patient_gateway(paper: Any, short_timeout: None, sleeps: SleepRecorder) -> ExchangeGateway:
    """The order path's gateway: generous retry budget, waits recorded."""
    return make_gateway(sleep=sleeps)


@pytest.fixture
def impatient_gateway(paper: Any, short_timeout: None, sleeps: SleepRecorder) -> ExchangeGateway:
    """A gateway whose retry budget runs out within a few seconds: the answer stays lost."""
    return make_gateway(sleep=sleeps, budget=2.0)


@pytest.fixture(autouse=True)
def _no_filter_rejections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every fault test ends with no precision or size rejection on the exchange."""
    yield from no_filter_rejections(request)
