"""Listen keys of the user data stream: ``POST/PUT/DELETE /fapi/v1/listenKey``.

As on Binance, the account has at most one key: creating one while a key is active returns
that key and extends it; a key expires ``validity_ms`` (60 minutes) after its last keep-alive,
and the stream then sends ``listenKeyExpired`` and closes its connections.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from paper.errors import BinanceError

DEFAULT_VALIDITY_MS = 60 * 60 * 1000
UNKNOWN_KEY = -1125
UNKNOWN_KEY_MSG = "This listenKey does not exist."


def _wall_ms() -> int:
    return int(time.time() * 1000)


class ListenKeyBook:
    """The account's listen key and when it expires (wall-clock ms)."""

    def __init__(
        self,
        *,
        validity_ms: int = DEFAULT_VALIDITY_MS,
        clock: Callable[[], int] = _wall_ms,
    ) -> None:
        self.validity_ms = validity_ms
        self.clock = clock
        self._lock = threading.Lock()
        self._key: str | None = None
        self._expires_at = 0

    def create(self) -> dict[str, Any]:
        """``POST``: the active key, extended, or a new one."""
        with self._lock:
            if self._key is None or self._expires_at <= self.clock():
                self._key = secrets.token_urlsafe(48)[:64]
            self._expires_at = self.clock() + self.validity_ms
            return {"listenKey": self._key}

    def keep_alive(self) -> dict[str, Any]:
        """``PUT``: extend the active key; ``-1125`` when there is none (or it expired)."""
        with self._lock:
            if self._key is None or self._expires_at <= self.clock():
                raise BinanceError(UNKNOWN_KEY, UNKNOWN_KEY_MSG, 400)
            self._expires_at = self.clock() + self.validity_ms
            return {"listenKey": self._key}

    def close(self) -> dict[str, Any]:
        """``DELETE``: the key stops working at once."""
        with self._lock:
            self._key = None
            self._expires_at = 0
            return {}

    def expire_now(self) -> None:
        """Let the key run out now (the stream then reports it expired)."""
        with self._lock:
            if self._key is not None:
                self._expires_at = self.clock()

    def is_valid(self, key: str) -> bool:
        with self._lock:
            return key == self._key and self._expires_at > self.clock()

    def expired_key(self) -> str | None:
        """The key, once, when it has just expired (it is then forgotten)."""
        with self._lock:
            if self._key is not None and self._expires_at <= self.clock():
                key, self._key = self._key, None
                return key
            return None

    def active_key(self) -> str | None:
        with self._lock:
            return self._key if self._key and self._expires_at > self.clock() else None
