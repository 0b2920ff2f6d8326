"""The exchange overloaded: 503 and timeouts in bursts, 429 with Retry-After, and the 418 ban.

The retry policy's waits are recorded instead of slept (``sleeps``), so "backs off as told" is
checked on the waits it asked for and on the requests the exchange received meanwhile.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from exchange.gateway import ExchangeGateway
from tests.support.exchange import (
    HELD_SECONDS,
    PROTECTED,
    SleepRecorder,
    accepted,
    exchange_exit_types,
    exchange_quantity,
    make_gateway,
)
from trading.guard import guard_pass
from trading.models import Symbol
from trading.services import OpenOutcome, position_open

pytestmark = pytest.mark.django_db(transaction=True)

POSITIONS = "GET /fapi/v2/positionRisk"
OPEN_ORDERS = "GET /fapi/v1/openOrders"
BINANCE_WEIGHT_LIMIT = 2400


def requests_to(paper: Any, key: str) -> int:
    return int(paper.stats()["requests"].get(key, 0))


@pytest.fixture
def protected_long(btc_market: Any, btc: Symbol, patient_gateway: ExchangeGateway) -> None:
    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=patient_gateway)
    assert outcome.ok, outcome


def test_guard_when_503_burst_then_retries_with_backoff_and_pass_completes(
    btc_market: Any, protected_long: None, patient_gateway: ExchangeGateway, sleeps: SleepRecorder
) -> None:
    sleeps.calls.clear()
    before = requests_to(btc_market, POSITIONS)
    btc_market.faults(kind="error", method="GET", path="/fapi/v2/positionRisk", count=3, status=503)

    report = guard_pass(gateway=patient_gateway)

    assert report.error == "", report.summary()
    assert report.positions == 1
    assert requests_to(btc_market, POSITIONS) - before == 4  # three refused, the fourth answered
    assert len(sleeps.calls) == 3 and all(seconds > 0 for seconds in sleeps.calls)


def test_open_when_reads_time_out_in_a_burst_then_opens_once_and_protected(
    btc_market: Any, btc: Symbol, patient_gateway: ExchangeGateway
) -> None:
    btc_market.faults(
        kind="timeout", method="GET", path="/fapi/v1/premiumIndex", count=2, seconds=HELD_SECONDS
    )

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=patient_gateway)

    assert outcome.status == OpenOutcome.OPENED, outcome
    assert exchange_quantity(btc_market, "BTCUSDT") == Decimal("0.011")
    assert exchange_exit_types(btc_market, "BTCUSDT") == PROTECTED
    assert accepted(btc_market) == 3


def test_guard_when_429_with_retry_after_then_waits_that_long_once_and_resumes(
    btc_market: Any, protected_long: None, patient_gateway: ExchangeGateway, sleeps: SleepRecorder
) -> None:
    sleeps.calls.clear()
    before = requests_to(btc_market, OPEN_ORDERS)
    btc_market.faults(kind="rate_limit", method="GET", path="/fapi/v1/openOrders", retry_after=7)

    report = guard_pass(gateway=patient_gateway)

    assert report.error == "", report.summary()
    assert len(sleeps.calls) == 1 and sleeps.calls[0] >= 7
    assert requests_to(btc_market, OPEN_ORDERS) - before == 2  # refused once, then answered


def test_open_when_418_with_retry_after_then_waits_that_long_and_opens_once(
    btc_market: Any, btc: Symbol, patient_gateway: ExchangeGateway, sleeps: SleepRecorder
) -> None:
    btc_market.faults(kind="ban", method="GET", path="/fapi/v2/account", retry_after=12)

    outcome = position_open(symbol=btc, side="LONG", reason="test", gateway=patient_gateway)

    assert outcome.status == OpenOutcome.OPENED, outcome
    assert any(seconds >= 12 for seconds in sleeps.calls), sleeps.calls
    assert accepted(btc_market) == 3


def test_guard_when_banned_longer_than_retry_budget_then_next_pass_sends_nothing_during_ban(
    btc_market: Any, protected_long: None, sleeps: SleepRecorder
) -> None:
    # A real ban: past the weight limit the paper exchange answers 418 for ban_seconds, as
    # Binance does; every request sent during a ban lengthens it on Binance (2 min up to 3 days).
    btc_market.configure(weight_limit_1m=1, ban_after=0, ban_seconds=90)
    first = guard_pass(gateway=make_gateway(sleep=sleeps))
    sent_during_ban = sum(btc_market.stats()["requests"].values())

    second = guard_pass(gateway=make_gateway(sleep=sleeps))

    assert "RateLimited" in first.error, first.summary()
    assert second.error, second.summary()
    assert sum(btc_market.stats()["requests"].values()) == sent_during_ban, (
        "the next pass sent requests to an exchange that had banned us for 90 s"
    )


def test_guard_when_passes_every_5s_with_20_symbols_then_weight_well_under_binance_limit(
    btc_market: Any, protected_long: None, patient_gateway: ExchangeGateway
) -> None:
    # The guard reads the orders of the symbols it watches only, not of every symbol configured.
    per_pass = 0
    for _ in range(2):  # a second try only if the exchange's minute window rolled over meanwhile
        before = int(btc_market.stats()["weight_1m"])
        guard_pass(gateway=patient_gateway)
        per_pass = int(btc_market.stats()["weight_1m"]) - before
        if per_pass > 0:
            break

    per_minute = per_pass * 60 // 5

    assert per_pass > 0
    assert per_minute <= BINANCE_WEIGHT_LIMIT // 2, f"{per_pass} per pass, {per_minute}/min"
