"""The LLM client under attack: redirects, plain http, a trickling server, absurd numbers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from signals.llm import llm_post
from signals.models import LlmCall, SignalDecision
from signals.services import signal_for_symbol
from tests.support.fakes.llm import LLM_KEY, FakeLlm, _entry
from trading.gateway import exchange_gateway
from trading.models import Symbol


@pytest.fixture
def other_host() -> Iterator[FakeLlm]:
    """A second server, standing for a host the key must never reach."""
    server = FakeLlm().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_llm_post_when_server_redirects_then_refused_and_key_not_sent_elsewhere(
    fake_llm: FakeLlm, other_host: FakeLlm, status: int
) -> None:
    fake_llm.redirect(f"{other_host.url}/chat/completions", status=status)

    response = llm_post(url=fake_llm.url, api_key=LLM_KEY, body={"model": "m"}, timeout=2)

    assert other_host.requests == []
    assert response.status == status
    assert response.error.startswith("redirect refused")


@pytest.mark.parametrize(
    "url",
    [
        "http://llm.example.com/v1",
        "ftp://llm.example.com/v1",
        "file:///etc/hostname",
        "https://user:secret@llm.example.com/v1",
        "llm.example.com/v1",
        "https://[::1/v1",
    ],
)
def test_llm_post_when_url_not_https_then_refused_without_sending(url: str) -> None:
    response = llm_post(url=url, api_key=LLM_KEY, body={"model": "m"}, timeout=1)

    assert response.status is None
    assert response.latency_ms == 0
    assert "LLM_API_URL" in response.error
    assert LLM_KEY not in response.error


def test_llm_post_when_http_on_loopback_then_sent(fake_llm: FakeLlm) -> None:
    fake_llm.answer({"BTCUSDT": _entry()})

    response = llm_post(url=fake_llm.url, api_key=LLM_KEY, body={"model": "m"}, timeout=2)

    assert response.error == ""
    assert response.status == 200
    assert fake_llm.requests[0]["authorization"] == f"Bearer {LLM_KEY}"


def test_llm_post_when_server_trickles_bytes_then_stopped_at_the_deadline(
    fake_llm: FakeLlm,
) -> None:
    # About 700 bytes at one every 50 ms: 35 s to finish, each read well inside its timeout.
    fake_llm.trickle({"BTCUSDT": _entry()}, seconds_per_byte=0.05)
    started = time.monotonic()

    response = llm_post(url=fake_llm.url, api_key=LLM_KEY, body={"model": "m"}, timeout=1)

    took = time.monotonic() - started
    assert response.error == "timeout after 1s"
    assert took < 2.5  # the deadline plus scheduling slack; 35 s without a total deadline


def test_signal_for_symbol_when_profit_target_absurd_then_refused_and_decisions_page_loads(
    llm_btc: Symbol,
    fake_llm: FakeLlm,
    admin_client: Any,
) -> None:
    fake_llm.answer(json.dumps({"BTCUSDT": _entry()}).replace("101000", "1e30"))

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "HOLD"
    assert "profit_target 1E+30 is more than 50 % away from the price 100000" in decision.reason
    assert SignalDecision.objects.get(id=decision.decision_id).profit_target is None
    assert admin_client.get("/admin/signals/signaldecision/").status_code == 200


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"stop_loss": 10}, "stop_loss 10 is more than 50 % away"),
        ({"profit_target": 100000.123456789012345}, None),
    ],
)
def test_signal_for_symbol_when_price_far_or_too_precise_then_bounded(
    llm_btc: Symbol,
    fake_llm: FakeLlm,
    changes: dict[str, Any],
    reason: str | None,
) -> None:
    fake_llm.answer(json.dumps({"BTCUSDT": _entry(**changes)}))

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    stored = SignalDecision.objects.get(id=decision.decision_id)
    if reason:
        assert decision.action == "HOLD" and reason in decision.reason
    else:
        assert decision.action == "LONG"
        assert stored.profit_target == Decimal("100000.1234567890")


def test_signal_for_symbol_when_answer_nested_deeply_then_refused_not_raised(
    llm_btc: Symbol,
    fake_llm: FakeLlm,
) -> None:
    fake_llm.answer('{"BTCUSDT": ' + "[" * 100_000 + "]" * 100_000 + "}")

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "HOLD"
    assert "nested too deeply" in decision.reason
    assert LlmCall.objects.get().outcome == LlmCall.Outcome.REFUSED


@pytest.mark.parametrize(
    "number", ["0." + "1" * 200_000, "1" * 200_000, "0.5e-" + "9" * 100_000], ids=str.__len__
)
def test_signal_for_symbol_when_confidence_has_huge_digits_then_refused_and_never_logged_whole(
    llm_btc: Symbol,
    fake_llm: FakeLlm,
    caplog: pytest.LogCaptureFixture,
    number: str,
) -> None:
    fake_llm.answer(json.dumps({"BTCUSDT": _entry()}).replace("0.72", number))

    with caplog.at_level(logging.DEBUG):
        decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "HOLD"
    assert len(decision.reason) < 500
    call = LlmCall.objects.get()
    assert len(call.refusal_reason) < 500
    assert all(len(record.getMessage()) < 2000 for record in caplog.records)


def test_signal_for_symbol_when_answer_has_thousands_of_long_keys_then_refused_briefly(
    llm_btc: Symbol,
    fake_llm: FakeLlm,
) -> None:
    answer = {"BTCUSDT": _entry(), **{f"{i:05d}" + "X" * 500: {} for i in range(1000)}}
    fake_llm.answer(answer)

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "HOLD"
    assert len(LlmCall.objects.get().refusal_reason) < 500
