"""The audit records are visible in the admin and cannot be added, edited or deleted there."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from signals.models import LlmCall, SignalDecision
from trading.models import Symbol


@pytest.fixture
def operator_client(db: None) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def test_admin_llm_call_when_opened_then_prompt_and_answer_shown_read_only(
    defaults: None, operator_client: Client
) -> None:
    call = LlmCall.objects.create(
        model="fake-model",
        symbols="BTCUSDT",
        request={"model": "fake-model", "messages": [{"role": "user", "content": "EMA20 ..."}]},
        response='{"choices": []}',
        http_status=200,
        outcome=LlmCall.Outcome.REFUSED,
        refusal_reason="response has no choices",
        latency_ms=120,
    )
    url = f"/admin/signals/llmcall/{call.id}/change/"

    page = operator_client.get(url)
    edit = operator_client.post(url, {"model": "other"})
    add = operator_client.get("/admin/signals/llmcall/add/")
    delete = operator_client.post(f"/admin/signals/llmcall/{call.id}/delete/", {"post": "yes"})

    assert page.status_code == 200
    assert b"EMA20 ..." in page.content and b"response has no choices" in page.content
    assert (edit.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert LlmCall.objects.get().model == "fake-model"


def test_admin_signal_decision_when_listed_then_shown_and_not_addable(
    defaults: None, operator_client: Client
) -> None:
    SignalDecision.objects.create(
        symbol=Symbol.objects.get(name="BTCUSDT"),
        agent="rule",
        action="HOLD",
        reason="no crossover in the last 5 candle(s)",
    )

    listing = operator_client.get("/admin/signals/signaldecision/")
    add = operator_client.get("/admin/signals/signaldecision/add/")

    assert listing.status_code == 200
    assert b"no crossover in the last 5 candle(s)" in listing.content
    assert add.status_code == 403
