"""rediss:// verifies the server's certificate unless REDIS_TLS_VERIFY=0 says otherwise."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.processes import production_env, python

# Connect through the Celery app's own broker connection, as the worker and Beat do.
CONNECT = """
import json
from arena.celery import app
from django.conf import settings
try:
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=0)
        connection.default_channel
    print(json.dumps(["connected", str(settings.CELERY_BROKER_USE_SSL)]))
except Exception as exc:
    print(json.dumps([type(exc).__name__ + ": " + str(exc), str(settings.CELERY_BROKER_USE_SSL)]))
"""


class SelfSignedRedis:
    """A TLS server on loopback with a self-signed certificate, answering Redis' commands
    with +OK / +PONG: enough for a client that accepted the certificate to connect."""

    def __init__(self, folder: Path) -> None:
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.port = self._listener.getsockname()[1]
        self.handshakes = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(raw,), daemon=True).start()

    def _answer(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with self._context.wrap_socket(raw, server_side=True) as tls:
                self.handshakes += 1
                while data := tls.recv(65536):
                    # One reply per command (each command is a RESP array: "*<n>\r\n...").
                    for command in data.split(b"*")[1:]:
                        if b"\r\n" not in command:
                            continue
                        tls.sendall(b"+PONG\r\n" if b"PING" in command.upper() else b"+OK\r\n")
        except (OSError, ssl.SSLError):
            pass

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def self_signed_redis(tmp_path: Path) -> Iterator[SelfSignedRedis]:
    server = SelfSignedRedis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _connect(server: SelfSignedRedis, **env: str) -> list[str]:
    result = python(
        CONNECT,
        production_env(
            DJANGO_SETTINGS_MODULE="arena.settings.test",
            REDIS_URL=f"rediss://127.0.0.1:{server.port}/0",
            **env,
        ),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_broker_when_rediss_and_certificate_unverifiable_then_connection_refused(
    self_signed_redis: SelfSignedRedis,
) -> None:
    outcome, use_ssl = _connect(self_signed_redis)

    assert "CERTIFICATE_VERIFY_FAILED" in outcome
    assert "CERT_REQUIRED" in use_ssl


def test_broker_when_rediss_and_verification_relaxed_explicitly_then_connected(
    self_signed_redis: SelfSignedRedis,
) -> None:
    outcome, use_ssl = _connect(self_signed_redis, REDIS_TLS_VERIFY="0")

    # The fake server speaks just enough Redis to be told from a refused certificate.
    assert "CERTIFICATE" not in outcome.upper()
    assert "CERT_NONE" in use_ssl
    deadline = time.monotonic() + 5
    while self_signed_redis.handshakes == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert self_signed_redis.handshakes >= 1
