"""A fake Telegram Bot API for the alerts, with the settings pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakes.telegram import CHAT_ID, TOKEN, FakeTelegram


@pytest.fixture
def telegram(settings: object) -> Iterator[FakeTelegram]:
    """A fake Telegram Bot API, with the settings pointed at it."""
    fake = FakeTelegram().start()
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHAT_ID = CHAT_ID
    settings.TELEGRAM_API_URL = fake.url
    try:
        yield fake
    finally:
        fake.stop()
