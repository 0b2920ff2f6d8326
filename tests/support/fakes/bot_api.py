"""A fake Telegram Bot API for the console: ``getUpdates`` (long polling) and ``sendMessage``.

The test plays the users (``push``); every ``sendMessage`` the bot makes is recorded, to any
chat, so a reply to a chat that should get none is seen.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "654321:fake-console-token"
_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>\w+)$")
# A long poll is held at most this long here, whatever the client asks, to keep tests short.
MAX_HOLD_SECONDS = 2.0


@dataclass
class FakeBotApi:
    updates: list[dict] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)
    _next_id: int = 1000
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def push(self, chat_id: str, text: str, *, username: str = "op") -> int:
        """A user writes ``text`` to the bot from ``chat_id``; the update id."""
        with self._changed:
            update_id = self._next_id
            self._next_id += 1
            self.updates.append(
                {
                    "update_id": update_id,
                    "message": {
                        "message_id": update_id,
                        "date": int(time.time()),
                        "chat": {"id": int(chat_id), "type": "private"},
                        "from": {"id": int(chat_id), "is_bot": False, "username": username},
                        "text": text,
                    },
                }
            )
            self._changed.notify_all()
            return update_id

    def replies_to(self, chat_id: str) -> list[str]:
        with self._changed:
            return [m["text"] for m in self.sent if str(m["chat_id"]) == str(chat_id)]

    def start(self) -> FakeBotApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                match = _PATH.match(self.path)
                if match is None:
                    return self._answer(404, {"ok": False, "description": "Not Found"})
                if match["token"] != TOKEN:
                    return self._answer(401, {"ok": False, "description": "Unauthorized"})
                if match["method"] == "getUpdates":
                    return self._answer(200, {"ok": True, "result": fake._poll(body)})
                if match["method"] == "sendMessage":
                    with fake._changed:
                        fake.sent.append(body)
                        fake._changed.notify_all()
                    return self._answer(200, {"ok": True, "result": {"message_id": 1}})
                return self._answer(404, {"ok": False, "description": "Not Found"})

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
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _poll(self, body: dict) -> list[dict]:
        """Telegram's getUpdates: ``offset`` confirms (drops) older updates; wait for one."""
        offset = body.get("offset")
        hold = min(float(body.get("timeout") or 0), MAX_HOLD_SECONDS)
        deadline = time.monotonic() + hold
        with self._changed:
            if offset is not None:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            return list(self.updates)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
