"""The LLM agent against a fake OpenAI-compatible server and the paper exchange."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from signals.llm import (
    AccountSnapshot,
    MarketSnapshot,
    PositionSnapshot,
    llm_messages,
)
from signals.models import LlmCall, SignalDecision
from signals.services import llm_decide, signal_for_symbol
from tests.signals.candles import V_TURN
from tests.support.fakes.llm import LLM_KEY, FakeLlm, _entry
from trading.gateway import exchange_gateway
from trading.models import Symbol


def test_signal_for_symbol_when_llm_answers_buy_to_enter_then_long_and_call_recorded(
    llm_btc: Symbol, fake_llm: FakeLlm
) -> None:
    fake_llm.answer({"BTCUSDT": _entry()})

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "LONG"
    assert decision.confidence == Decimal("0.7200")
    stored = SignalDecision.objects.get(id=decision.decision_id)
    assert (stored.action, stored.agent) == ("LONG", "llm")
    assert stored.stop_loss == Decimal("99000.5")
    assert stored.profit_target == Decimal("101000")
    call = stored.llm_call
    assert call.outcome == LlmCall.Outcome.ACCEPTED
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (1200, 80, 1280)
    assert call.http_status == 200
    assert call.results["BTCUSDT"]["action"] == "LONG"
    assert "buy_to_enter" in call.response


def test_signal_for_symbol_when_llm_called_then_openai_protocol_and_key_never_stored(
    llm_btc: Symbol, fake_llm: FakeLlm
) -> None:
    fake_llm.answer({"BTCUSDT": _entry(signal="hold", profit_target=None, stop_loss=None)})

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "HOLD"
    [request] = fake_llm.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == f"Bearer {LLM_KEY}"
    body = request["body"]
    assert body["model"] == "fake-model"
    assert body["response_format"] == {"type": "json_object"}
    prompt = body["messages"][1]["content"]
    assert "ALL BTCUSDT DATA" in prompt
    assert "current_price = 100000.0000" in prompt
    assert "Funding Rate: 0.0001" in prompt
    assert "Current Account Value: 10000.00 USDT" in prompt
    call = LlmCall.objects.get()
    assert LLM_KEY not in json.dumps(call.request) + call.response + call.refusal_reason


REFUSALS = [
    pytest.param(
        '{"BTCUSDT": {"signal": "buy_to_enter", "confidence": 0.7',
        "answer is not valid JSON",
        id="malformed-json",
    ),
    pytest.param(
        {"BTCUSDT": _entry(leverage=20)},
        "BTCUSDT: unexpected field(s): leverage",
        id="leverage-field",
    ),
    pytest.param(
        {"BTCUSDT": _entry(quantity=0.5)},
        "BTCUSDT: unexpected field(s): quantity",
        id="quantity-field",
    ),
    pytest.param(
        {"BTCUSDT": _entry(confidence=7)},
        "confidence must be between 0 and 1, not 7",
        id="confidence-7",
    ),
    pytest.param(
        json.dumps({"BTCUSDT": _entry()}).replace("0.72", "NaN"),
        "NaN is not a number",
        id="nan",
    ),
    pytest.param(
        json.dumps({"BTCUSDT": _entry()}).replace("101000", "Infinity"),
        "Infinity is not a number",
        id="infinity",
    ),
    pytest.param(
        {"BTCUSDT": _entry(stop_loss=100500)},
        "stop_loss 100500 is not below the price 100000",
        id="stop-above-price-of-long",
    ),
    pytest.param(
        {"BTCUSDT": _entry(signal="sell_to_enter", stop_loss=99000, profit_target=98000)},
        "stop_loss 99000 is not above the price 100000",
        id="stop-below-price-of-short",
    ),
    pytest.param(
        {"BTCUSDT": _entry(signal="go_long")},
        "signal must be one of buy_to_enter, sell_to_enter, close, hold",
        id="unknown-signal",
    ),
    pytest.param(
        {"BTCUSDT": _entry(confidence="0.9")},
        "confidence must be a number",
        id="confidence-as-text",
    ),
    pytest.param(
        {"BTCUSDT": _entry(justification=...)},
        "missing field(s): justification",
        id="missing-field",
    ),
    pytest.param(
        '{"BTCUSDT": {"signal": "hold", "signal": "buy_to_enter"}}',
        "duplicate key 'signal'",
        id="duplicate-key",
    ),
    pytest.param(
        "Sure! I would buy: " + json.dumps({"BTCUSDT": _entry()}),
        "answer is not valid JSON",
        id="json-inside-free-text",
    ),
    pytest.param("", "empty answer", id="empty-answer"),
    pytest.param("{}", "empty answer", id="empty-object"),
    pytest.param(
        {"ETHUSDT": _entry()},
        "no decision for BTCUSDT in the answer",
        id="only-a-symbol-not-enabled",
    ),
]


@pytest.mark.parametrize(("answer", "reason"), REFUSALS)
def test_signal_for_symbol_when_llm_answer_invalid_then_hold_and_refusal_recorded(
    llm_btc: Symbol, fake_llm: FakeLlm, answer: str | dict[str, Any], reason: str
) -> None:
    fake_llm.answer(answer)

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "HOLD"
    assert decision.reason.startswith("LLM answer refused: ")
    assert reason in decision.reason
    call = LlmCall.objects.get()
    assert call.outcome == LlmCall.Outcome.REFUSED
    assert reason in call.refusal_reason
    assert SignalDecision.objects.get(id=decision.decision_id).llm_call == call


def test_signal_for_symbol_when_llm_answers_for_symbol_not_enabled_then_that_entry_refused(
    llm_btc: Symbol, fake_llm: FakeLlm
) -> None:
    fake_llm.answer({"BTCUSDT": _entry(), "ETHUSDT": _entry()})

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "LONG"
    call = LlmCall.objects.get()
    assert call.outcome == LlmCall.Outcome.PARTIAL
    assert call.refusal_reason == "ETHUSDT is not an enabled symbol"


def test_signal_for_symbol_when_llm_http_500_then_hold_and_failure_recorded(
    llm_btc: Symbol, fake_llm: FakeLlm
) -> None:
    fake_llm.respond(500, b'{"error": {"message": "upstream overloaded"}}')

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "HOLD"
    assert "HTTP 500" in decision.reason
    call = LlmCall.objects.get()
    assert (call.outcome, call.http_status) == (LlmCall.Outcome.FAILED, 500)
    assert "upstream overloaded" in call.response


def test_signal_for_symbol_when_llm_does_not_answer_in_time_then_hold_and_timeout_recorded(
    llm_btc: Symbol, fake_llm: FakeLlm
) -> None:
    fake_llm.hang()

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.action == "HOLD"
    assert decision.reason == "LLM answer refused: timeout after 1s"
    call = LlmCall.objects.get()
    assert call.outcome == LlmCall.Outcome.FAILED
    assert call.refusal_reason == "timeout after 1s"
    assert 1000 <= call.latency_ms < 5000


def test_signal_for_symbol_when_llm_url_not_set_then_hold_without_request(
    llm_btc: Symbol, fake_llm: FakeLlm, settings: Any
) -> None:
    settings.LLM_API_URL = ""

    decision = signal_for_symbol(symbol=llm_btc, gateway=exchange_gateway())

    assert decision.reason == "LLM answer refused: LLM_API_URL is not set"
    assert fake_llm.requests == []
    assert LlmCall.objects.get().outcome == LlmCall.Outcome.FAILED


def _market(symbol: str, price: Decimal) -> MarketSnapshot:
    return MarketSnapshot(
        symbol=symbol,
        mark_price=price,
        funding_rate=Decimal("0.0001"),
        closes=[Decimal(c) for c in V_TURN],
        candle_interval="1m",
    )


NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
ACCOUNT = AccountSnapshot(equity=Decimal("10000"), available=Decimal("8000"))


@pytest.mark.django_db
def test_llm_decide_when_one_symbol_invalid_then_others_still_decided(
    defaults: None, fake_llm: FakeLlm
) -> None:
    fake_llm.answer(
        {
            "BTCUSDT": _entry(profit_target=200, stop_loss=150),
            "BNBUSDT": _entry(signal="sell_to_enter", leverage=10),
        }
    )

    decisions, call = llm_decide(
        model="fake-model",
        timeout_seconds=5,
        markets=[_market("BTCUSDT", Decimal(178)), _market("BNBUSDT", Decimal(178))],
        account=ACCOUNT,
        now=NOW,
    )

    assert decisions["BTCUSDT"].action == "LONG"
    assert decisions["BNBUSDT"].action == "HOLD"
    assert "BNBUSDT: unexpected field(s): leverage" in decisions["BNBUSDT"].reason
    assert call.outcome == LlmCall.Outcome.PARTIAL
    assert call.symbols == "BTCUSDT,BNBUSDT"
    assert call.results["BNBUSDT"] == {"refused": "BNBUSDT: unexpected field(s): leverage"}


def test_llm_messages_when_position_open_then_prompt_has_series_and_exit_plan() -> None:
    account = AccountSnapshot(
        equity=Decimal("10012.5"),
        available=Decimal("7000"),
        positions=[
            PositionSnapshot(
                symbol="BTCUSDT",
                side="LONG",
                quantity=Decimal("0.060"),
                entry_price=Decimal("170"),
                mark_price=Decimal("178"),
                unrealized_pnl=Decimal("0.48"),
                leverage=2,
                take_profit=Decimal("180.5"),
                stop_loss=Decimal("169.1"),
            )
        ],
    )

    system, user = llm_messages(
        markets=[_market("BTCUSDT", Decimal(178))], account=account, now=NOW
    )

    assert "do not include quantity, leverage or risk fields" in system["content"]
    text = user["content"]
    assert "ORDERED: OLDEST → NEWEST" in text
    assert "Close prices: [161.0000, 162.0000, 164.0000," in text
    assert text.index("ALL BTCUSDT DATA") < text.index("HERE IS YOUR ACCOUNT INFORMATION")
    assert '"exit_plan": {"profit_target": "180.5", "stop_loss": "169.1"}' in text
    assert "Available Cash: 7000.00 USDT" in text
