"""A minimal Telegram Bot API client: ``sendMessage`` and nothing else.

The bot token is part of the URL, so no URL, request or response header is ever put into an
exception message or a log line: errors carry only the HTTP status and Telegram's description.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

# Telegram refuses longer messages.
MAX_MESSAGE_LENGTH = 4096


class TelegramError(Exception):
    """Telegram did not take the message. ``temporary`` errors are retried by the delivery task;
    the others (bad token, unknown chat) would fail the same way again and are not."""

    def __init__(self, message: str, *, temporary: bool, retry_after: float | None = None):
        super().__init__(message)
        self.temporary = temporary
        self.retry_after = retry_after


@dataclass(frozen=True)
class TelegramConfig:
    token: str
    chat_id: str
    api_url: str

    @property
    def configured(self) -> bool:
        return bool(self.token and self.chat_id)


def telegram_config() -> TelegramConfig:
    """Read the Telegram settings (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID, TELEGRAM_API_URL)."""
    from django.conf import settings

    return TelegramConfig(
        token=settings.TELEGRAM_BOT_TOKEN,
        chat_id=settings.TELEGRAM_CHAT_ID,
        api_url=settings.TELEGRAM_API_URL.rstrip("/"),
    )


def telegram_send(*, config: TelegramConfig, text: str, timeout: float = 10.0) -> None:
    """Send ``text`` to the configured chat; raise ``TelegramError`` when it was not taken."""
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "…"
    body = json.dumps({"chat_id": config.chat_id, "text": text}).encode()
    request = urllib.request.Request(
        f"{config.api_url}/bot{config.token}/sendMessage",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = _json(response.read())
    except urllib.error.HTTPError as exc:
        answer = _json(exc.read())
        description = str(answer.get("description") or exc.reason)
        retry_after = (answer.get("parameters") or {}).get("retry_after")
        # 429 and 5xx pass; any other 4xx (unauthorized, chat not found) will not.
        temporary = exc.code == 429 or exc.code >= 500
        raise TelegramError(
            f"Telegram answered {exc.code}: {description}",
            temporary=temporary,
            retry_after=float(retry_after) if retry_after is not None else None,
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        # ``from None``: the chained exception would carry the URL, and with it the token.
        raise TelegramError(f"Telegram unreachable: {reason}", temporary=True) from None
    if not answer.get("ok"):
        raise TelegramError(
            f"Telegram refused the message: {answer.get('description', 'no description')}",
            temporary=False,
        )


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
