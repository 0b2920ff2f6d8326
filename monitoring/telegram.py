"""A minimal Telegram Bot API client: ``sendMessage`` and nothing else.

The bot token is part of the URL, so no URL, request or response header is ever put into an
exception message or a log line: errors carry only the HTTP status and Telegram's description.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

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
    problem: str = ""  # why these settings cannot work; never contains the token

    @property
    def configured(self) -> bool:
        return bool(self.token and self.chat_id)


# Telegram's own formats: "<bot id>:<secret>", a numeric chat id (negative for groups) or
# "@channelname". Anything else (a pasted space, quotes) would fail on every alert.
_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
_CHAT_ID = re.compile(r"-?\d+|@[A-Za-z][A-Za-z0-9_]{3,}")


def telegram_settings_problems(*, token: str, chat_id: str, api_url: str) -> list[str]:
    """What is wrong with the Telegram settings, each said without the token's value."""
    if not (token and chat_id):
        return []  # not configured: alerts stay in the admin
    problems = []
    if not _TOKEN.fullmatch(token):
        problems.append(
            "TELEGRAM_BOT_TOKEN is not a bot token of the form 123456:ABC-def "
            "(check for spaces, quotes or a line break around it)"
        )
    if not _CHAT_ID.fullmatch(chat_id):
        problems.append("TELEGRAM_CHAT_ID must be a numeric chat id or @channelname")
    try:
        parts = urlsplit(api_url)
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme not in ("https", "http") or not host:
        problems.append("TELEGRAM_API_URL must be a URL such as https://api.telegram.org")
    elif parts.scheme == "http" and not _is_loopback(host):
        problems.append("TELEGRAM_API_URL must use https (plain http only on this machine)")
    elif parts.query or parts.fragment or parts.username or parts.password:
        problems.append("TELEGRAM_API_URL must be a base URL, without query or credentials")
    return problems


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def telegram_config() -> TelegramConfig:
    """Read the Telegram settings (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID, TELEGRAM_API_URL)."""
    from django.conf import settings

    token, chat_id = settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID
    api_url = settings.TELEGRAM_API_URL.rstrip("/")
    problems = telegram_settings_problems(token=token, chat_id=chat_id, api_url=api_url)
    return TelegramConfig(
        token=token, chat_id=chat_id, api_url=api_url, problem="; ".join(problems)
    )


def telegram_send(*, config: TelegramConfig, text: str, timeout: float = 10.0) -> None:
    """Send ``text`` to the configured chat; raise ``TelegramError`` when it was not taken."""
    if config.problem:
        raise TelegramError(f"Telegram settings invalid: {config.problem}", temporary=False)
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "…"
    body = json.dumps({"chat_id": config.chat_id, "text": text}).encode()
    try:
        # Built inside the ``try``: a bad URL raises ValueError, whose text holds the token.
        request = urllib.request.Request(
            f"{config.api_url}/bot{config.token}/sendMessage",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with _OPENER.open(request, timeout=timeout) as response:
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
        reason = type(reason).__name__ if config.token in str(reason) else reason
        # ``from None``: the chained exception would carry the URL, and with it the token.
        raise TelegramError(f"Telegram unreachable: {reason}", temporary=True) from None
    except (ValueError, http.client.HTTPException) as exc:
        # Never str(exc): http.client quotes the URL (with the token) in its messages.
        raise TelegramError(
            f"Telegram request failed ({type(exc).__name__}): check TELEGRAM_API_URL",
            temporary=False,
        ) from None
    if not answer.get("ok"):
        raise TelegramError(
            f"Telegram refused the message: {answer.get('description', 'no description')}",
            temporary=False,
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The token is in the path: a redirect would hand it to whatever host it names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
