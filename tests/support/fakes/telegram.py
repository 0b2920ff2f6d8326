"""A fake Telegram Bot API on a free local port: takes ``sendMessage`` as Telegram does."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "123456:fake-token"
CHAT_ID = "4242"
_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>\w+)$")


@dataclass
class FakeTelegram:
    """Records every message it accepted; ``fail_next`` answers that many requests 502 and
    ``hang`` holds every answer until ``release()``, like a Telegram that does not respond."""

    messages: list[dict] = field(default_factory=list)
    requests: int = 0
    fail_next: int = 0
    hang: bool = False
    redirect_to: str = ""  # answer 302 to this base URL (same path), as a hijacked proxy might
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeTelegram:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                # Telegram takes sendMessage as GET too; here only a followed redirect sends one.
                with fake._lock:
                    fake.requests += 1
                self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake._lock:
                    fake.requests += 1
                if fake.hang:
                    fake._released.wait(30)
                if fake.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", f"{fake.redirect_to}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                match = _PATH.match(self.path)
                if match is None or match["method"] != "sendMessage":
                    return self._answer(
                        404, {"ok": False, "error_code": 404, "description": "Not Found"}
                    )
                if match["token"] != TOKEN:
                    return self._answer(
                        401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    )
                with fake._lock:
                    if fake.fail_next > 0:
                        fake.fail_next -= 1
                        return self._answer(
                            502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}
                        )
                payload = json.loads(body)
                if str(payload.get("chat_id")) != CHAT_ID:
                    return self._answer(
                        400,
                        {
                            "ok": False,
                            "error_code": 400,
                            "description": "Bad Request: chat not found",
                        },
                    )
                with fake._lock:
                    fake.messages.append(payload)
                    message_id = len(fake.messages)
                self._answer(
                    200, {"ok": True, "result": {"message_id": message_id, "text": payload["text"]}}
                )

            def _answer(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def release(self) -> None:
        self.hang = False
        self._released.set()

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
