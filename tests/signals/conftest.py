from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.signals.fake_llm import FakeLlm

LLM_KEY = "sk-test-never-stored"


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
