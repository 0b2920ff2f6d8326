"""Telegram Bot API ``getUpdates`` (long polling): the messages sent to the bot.

Like ``monitoring.telegram``, errors carry only the HTTP status and Telegram's description,
never the URL (the token is in it).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from monitoring.telegram import TelegramConfig, TelegramError


@dataclass(frozen=True)
class IncomingMessage:
    update_id: int
    chat_id: str
    sender: str  # the sender's username or id, for the record
    text: str


def telegram_get_updates(
    *, config: TelegramConfig, offset: int | None, poll_seconds: int
) -> list[IncomingMessage]:
    """Wait up to ``poll_seconds`` for updates from ``offset`` on (``offset`` confirms those
    before it); text messages only, oldest first. Raises ``TelegramError``."""
    body: dict[str, object] = {"timeout": poll_seconds, "allowed_updates": ["message"]}
    if offset is not None:
        body["offset"] = offset
    request = urllib.request.Request(
        f"{config.api_url}/bot{config.token}/getUpdates",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=poll_seconds + 10) as response:
            answer = _json(response.read())
    except urllib.error.HTTPError as exc:
        answer = _json(exc.read())
        description = str(answer.get("description") or exc.reason)
        retry_after = (answer.get("parameters") or {}).get("retry_after")
        raise TelegramError(
            f"Telegram answered {exc.code}: {description}",
            temporary=exc.code == 429 or exc.code >= 500,
            retry_after=float(retry_after) if retry_after is not None else None,
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TelegramError(f"Telegram unreachable: {reason}", temporary=True) from None
    if not answer.get("ok"):
        raise TelegramError(
            f"Telegram refused getUpdates: {answer.get('description', 'no description')}",
            temporary=False,
        )
    messages = []
    for update in answer.get("result") or []:
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            continue
        message = update.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            # Not a text message: confirmed (by the next offset) and ignored.
            messages.append(IncomingMessage(update["update_id"], "", "", ""))
            continue
        chat = message.get("chat") or {}
        sender = message.get("from") or {}
        messages.append(
            IncomingMessage(
                update_id=update["update_id"],
                chat_id=str(chat.get("id", "")),
                sender=str(sender.get("username") or sender.get("id") or ""),
                text=message["text"][:1000],
            )
        )
    return messages


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
