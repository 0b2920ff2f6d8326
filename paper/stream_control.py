"""The user data stream's part of the control API: ``POST /paper/v1/stream``.

Body fields (all optional; answer: the stream's status):

- ``action``: ``"drop"`` closes every connection at once, without a close frame (a network
  fault); ``"expire"`` makes the listen key expire now (``listenKeyExpired`` follows).
- ``lose``: the next n events are never sent.
- ``delay_seconds``: every event is sent this much later (order kept); 0 ends the delay.
- ``listen_key_validity_seconds``: how long a key lives after its last keep-alive (60 min).
- ``max_connection_seconds``: connections are closed after this long (24 h).
"""

from __future__ import annotations

from typing import Any

from paper.stream import UserStream


def handle_stream_control(stream: UserStream, method: str, data: dict[str, Any]) -> tuple[int, Any]:
    if method == "GET":
        return 200, stream.status()
    if method != "POST":
        return 404, {"error": f"no control endpoint {method} stream"}
    action = data.get("action")
    if action not in (None, "drop", "expire"):
        return 400, {"error": f"unknown action {action!r}; drop or expire"}
    numbers = {}
    for name in (
        "lose",
        "delay_seconds",
        "listen_key_validity_seconds",
        "max_connection_seconds",
    ):
        if name in data:
            value = float(data[name])
            if not value >= 0 or value == float("inf"):
                return 400, {"error": f"{name} must be a finite number, zero or more"}
            numbers[name] = value
    if "lose" in numbers:
        stream.faults.lose = int(numbers["lose"])
    if "delay_seconds" in numbers:
        stream.faults.delay_seconds = numbers["delay_seconds"]
    if "listen_key_validity_seconds" in numbers:
        stream.keys.validity_ms = int(numbers["listen_key_validity_seconds"] * 1000)
    if "max_connection_seconds" in numbers:
        stream.max_connection_seconds = numbers["max_connection_seconds"]
    if action == "drop":
        stream.drop_connections()
    elif action == "expire":
        stream.expire_key()
    return 200, stream.status()
