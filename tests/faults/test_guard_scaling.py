"""The guard's cost per pass must not grow with the number of open positions.

Its docstring promises a fixed number of database queries per pass and requests that depend on
the symbols it watches only; at 200 positions a pass that grows per position runs past its 5 s
interval (bench/results.md).
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchange.gateway import ExchangeGateway
from risk.models import RiskProfile
from trading.guard import guard_pass
from trading.models import Symbol
from trading.services import position_open

pytestmark = pytest.mark.django_db(transaction=True)


def open_longs(names: list[str], gateway: ExchangeGateway) -> None:
    for symbol in Symbol.objects.filter(name__in=names):
        outcome = position_open(symbol=symbol, side="LONG", reason="test", gateway=gateway)
        assert outcome.ok, outcome


def measured_pass(gateway: ExchangeGateway) -> tuple[int, int, list[str]]:
    guard_pass(gateway=gateway)  # warm-up: first-pass bookkeeping is not the steady state
    before = gateway.request_count
    with CaptureQueriesContext(connection) as captured:
        report = guard_pass(gateway=gateway)
    assert report.error == "", report.summary()
    return gateway.request_count - before, len(captured), [q["sql"] for q in captured]


def shape(sql: str) -> str:
    return re.sub(r"\b\d+\b|'[^']*'", "?", sql)[:120]


def test_guard_when_six_positions_instead_of_one_then_requests_per_symbol_and_same_queries(
    paper: Any, defaults: None, patient_gateway: ExchangeGateway
) -> None:
    paper.set_balance("USDT", "100000")
    RiskProfile.objects.filter(is_active=True).update(
        max_open_positions=10, risk_pct=Decimal("5"), max_risk_usd=Decimal("100")
    )
    Symbol.objects.update(enabled=True)
    names = list(Symbol.objects.order_by("name").values_list("name", flat=True))
    open_longs(names[:1], patient_gateway)
    one_requests, one_queries, one_sql = measured_pass(patient_gateway)
    open_longs(names[1:], patient_gateway)

    six_requests, six_queries, six_sql = measured_pass(patient_gateway)

    # The positions, then one conditional-order read per watched symbol (weight 1 each, below
    # the all-symbol read's 40); the queries do not grow at all.
    assert (one_requests, six_requests) == (1 + 1, 1 + 6)
    grown = Counter(map(shape, six_sql)) - Counter(map(shape, one_sql))
    assert six_queries == one_queries, f"queries that grew with positions: {grown.most_common(6)}"
