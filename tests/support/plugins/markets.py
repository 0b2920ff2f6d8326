"""The paper exchange's worlds shared by several directories: symbols, priced markets, and the
gateways each world uses (named for what sets them apart).

- guard and stream tests: ``btc_market`` and ``unthrottled_gateway`` (no client-side throttle,
  retries not slept), ``guard`` for one guard pass;
- order-path and risk tests: ``scenario_market`` and ``recording_gateway`` (ccxt's throttle kept,
  retry waits recorded in ``sleeps``);
- fault tests: ``btc_market``, with their own ``patient_gateway`` in ``tests/faults/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from exchange.gateway import ExchangeGateway
from exchange.retry import RetryPolicy
from tests.support.exchange import SleepRecorder, fast_gateway
from trading.gateway import exchange_gateway
from trading.guard import GuardReport, guard_pass
from trading.models import Symbol


@pytest.fixture
def btc(defaults: None) -> Symbol:
    return Symbol.objects.get(name="BTCUSDT")


@pytest.fixture
def bnb(defaults: None) -> Symbol:
    return Symbol.objects.get(name="BNBUSDT")


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def btc_market(paper: object, defaults: None) -> object:
    """BTCUSDT at 100000 and 1833.33 USDT: 0.011 BTC, TP 100500.0, SL 99700.0."""
    paper.set_price("BTCUSDT", "100000")
    paper.set_balance("USDT", "1833.33")
    return paper


@pytest.fixture
def scenario_market(paper: object, defaults: None) -> object:
    """BTCUSDT at 100000, BNBUSDT at 964 and 1833.33 USDT: the scenario of the default rules.

    30 % of 1833.33 is a margin budget of 550.00 USDT: 0.011 BTC and 1.14 BNB at 2x.
    """
    paper.set_price("BTCUSDT", "100000")
    paper.set_price("BNBUSDT", "964")
    paper.set_balance("USDT", "1833.33")
    return paper


@pytest.fixture
def unthrottled_gateway(paper: object) -> ExchangeGateway:
    """A gateway on the paper exchange for the test's own actions (opening, cancelling)."""
    return fast_gateway()


@pytest.fixture
def guard(paper: object) -> Callable[[], GuardReport]:
    """Run one guard pass with a gateway of its own, as the Celery task does."""
    return lambda: guard_pass(gateway=fast_gateway())


@pytest.fixture
def recording_gateway(paper: object, sleeps: SleepRecorder) -> ExchangeGateway:
    """The configured gateway (paper), its retry waits recorded instead of slept."""
    return exchange_gateway(retry_policy=RetryPolicy(max_total_seconds=30, sleep=sleeps))


@pytest.fixture
def expect_precision_rejection() -> None:
    """Request this in the one test that provokes -1111 on purpose (the retry-policy test)."""
