"""Injected faults: what goes wrong, for which requests, and how many times.

A fault matches requests by method and path prefix and applies to the next ``count`` of them.
Kinds:

- ``latency``: wait ``seconds`` before handling the request.
- ``timeout``: handle the request (an order IS accepted), then wait ``seconds`` before answering,
  long enough for the client to give up.
- ``drop``: handle the request, then close the connection without answering.
- ``error``: answer ``status`` (default 503) without handling the request.
- ``rate_limit``: answer 429 ``-1003`` with ``Retry-After: retry_after`` without handling it.
- ``ban``: answer 418 ``-1003`` with ``Retry-After: retry_after`` without handling it.
- ``algo_hidden``: new algo orders stay out of open-order queries for ``seconds`` (Binance has
  shown 30 s); a lookup by id finds them. Applies to the engine, not to a request count.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

KINDS = ("latency", "timeout", "drop", "error", "rate_limit", "ban")


@dataclass
class Fault:
    """One injected fault (see the module docstring for the kinds)."""

    kind: str
    method: str = ""
    path: str = ""
    count: int = 1
    seconds: float = 0.0
    status: int = 503
    retry_after: int = 5
    code: int = -1001
    msg: str = "Internal error; unable to process your request. Please try again."

    def matches(self, method: str, path: str) -> bool:
        return (not self.method or self.method == method) and path.startswith(self.path)

    @property
    def drops_connection(self) -> bool:
        return self.kind == "drop"

    def before(self, stopping: threading.Event) -> tuple[int, dict[str, str], bytes] | None:
        """Act before the request is handled; return an answer to send instead, if any."""
        if self.kind == "latency":
            stopping.wait(self.seconds)
        elif self.kind == "error":
            return self.status, {}, _body(self.code, self.msg)
        elif self.kind == "rate_limit":
            msg = (
                "Too many requests; current limit is 2400 requests per minute. Please use the"
                " websocket for live updates to avoid polling the API."
            )
            return 429, {"Retry-After": str(self.retry_after)}, _body(-1003, msg)
        elif self.kind == "ban":
            until = int((time.time() + self.retry_after) * 1000)
            msg = (
                f"Way too many requests; IP banned until {until}. Please use the websocket for"
                " live updates to avoid bans."
            )
            return 418, {"Retry-After": str(self.retry_after)}, _body(-1003, msg)
        return None

    def after(self, stopping: threading.Event) -> None:
        """Act after the request was handled, before the answer is written."""
        if self.kind == "timeout":
            stopping.wait(self.seconds)


def _body(code: int, msg: str) -> bytes:
    return json.dumps({"code": code, "msg": msg}, separators=(",", ":")).encode()


class FaultBook:
    """The pending faults; each request takes at most one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, spec: dict[str, Any]) -> Fault:
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        fault = Fault(**spec)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        if not self._faults:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(f).copy() for f in self._faults]
