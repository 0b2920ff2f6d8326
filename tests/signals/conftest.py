"""Fixtures of the signal tests: a fake OpenAI-compatible server, and BTCUSDT on the LLM agent."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.support.fakes.llm import LLM_KEY, FakeLlm
from trading.models import Strategy, Symbol

PRICE = Decimal("100000")


@pytest.fixture
def fake_llm(settings: object) -> Iterator[FakeLlm]:
    """A fake OpenAI-compatible server, with LLM_API_URL and LLM_API_KEY pointed at it."""
    server = FakeLlm().start()
    settings.LLM_API_URL = server.url
    settings.LLM_API_KEY = LLM_KEY
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def llm_btc(defaults: None, paper: Any, fake_llm: FakeLlm) -> Symbol:
    """BTCUSDT on the LLM agent, its price freshly set so the candles are current."""
    paper.set_price("BTCUSDT", str(PRICE))
    Strategy.objects.filter(symbol__name="BTCUSDT").update(
        agent=Strategy.Agent.LLM, llm_model="fake-model", llm_timeout_seconds=1
    )
    return Symbol.objects.get(name="BTCUSDT")
