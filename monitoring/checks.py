"""Start-up checks of the monitoring settings: a broken Telegram setting fails loudly at start
(``manage.py check``, ``migrate`` in the release phase, every management command) instead of
on the first alert, and the message never contains the token."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from monitoring.telegram import telegram_settings_problems


@checks.register()
def telegram_settings_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(problem, id="monitoring.E001")
        for problem in telegram_settings_problems(
            token=settings.TELEGRAM_BOT_TOKEN,
            chat_id=settings.TELEGRAM_CHAT_ID,
            api_url=settings.TELEGRAM_API_URL.rstrip("/"),
        )
    ]
