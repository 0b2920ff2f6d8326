"""A fake OpenAI-compatible chat-completions server on a free local port.

It speaks the protocol (``POST /chat/completions`` with a Bearer key, JSON in, a chat completion
out) and answers whatever the test queued. ``hang()`` makes it hold the request open until the
test ends, to exercise the client's timeout without sleeping anywhere.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The key the tests give the arena; it must never be stored or sent to another host.
LLM_KEY = "sk-test-never-stored"


def _entry(**changes: Any) -> dict[str, Any]:
    """One symbol's answer in the LLM's JSON: a long entry; ``...`` in changes drops a key."""
    entry = {
        "signal": "buy_to_enter",
        "confidence": 0.72,
        "profit_target": 101000,
        "stop_loss": 99000.5,
        "invalidation_condition": "a 5m close below 99000",
        "justification": "EMA20 turned up with MACD above its signal.",
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not ...}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    hang: bool = False
    location: str = ""
    trickle_seconds: float = 0.0


def completion(content: str, *, prompt_tokens: int = 1200, completion_tokens: int = 80) -> bytes:
    """A chat-completions response body whose assistant message is ``content``."""
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "fake-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    ).encode()


class FakeLlm:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._reply = Reply(body=completion("{}"))
        self._release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                # Only a client that followed a redirect sends a GET here.
                fake.requests.append(
                    {
                        "method": "GET",
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "body": None,
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                fake.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "body": json.loads(raw),
                    }
                )
                reply = fake._reply
                if self.path != "/v1/chat/completions":
                    reply = Reply(status=404, body=b'{"error": "not found"}')
                if reply.hang:
                    fake._release.wait(timeout=30)
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                if reply.location:
                    self.send_header("Location", reply.location)
                self.end_headers()
                if not reply.trickle_seconds:
                    self.wfile.write(reply.body)
                    return
                for i in range(len(reply.body)):
                    # One byte at a time, until the whole body is out or the server stops.
                    if fake._release.wait(reply.trickle_seconds):
                        return
                    try:
                        self.wfile.write(reply.body[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeLlm:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def answer(self, content: str | dict[str, Any]) -> None:
        """Reply 200 with this assistant message (a dict is sent as its JSON)."""
        text = content if isinstance(content, str) else json.dumps(content)
        self._reply = Reply(body=completion(text))

    def respond(self, status: int, body: bytes) -> None:
        """Reply with this raw status and body."""
        self._reply = Reply(status=status, body=body)

    def redirect(self, location: str, status: int = 302) -> None:
        """Answer every request with a redirect to ``location``."""
        self._reply = Reply(status=status, location=location)

    def trickle(self, content: str | dict[str, Any], *, seconds_per_byte: float) -> None:
        """Reply 200 with this answer, sending one byte every ``seconds_per_byte``."""
        text = content if isinstance(content, str) else json.dumps(content)
        self._reply = Reply(body=completion(text), trickle_seconds=seconds_per_byte)

    def hang(self) -> None:
        """Hold every request open without answering until the server stops."""
        self._reply = Reply(hang=True)
