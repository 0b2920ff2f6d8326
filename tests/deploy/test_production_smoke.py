"""The production set-up end to end, as a Heroku-style host runs it.

A virtualenv built from the root requirements.txt alone (the production lock, hashes checked);
static files collected as the build does; the Procfile's release, then web, worker, beat and
sentinel under honcho with only the production variables; a paper exchange in this process.
Through gunicorn (as the router forwards https): a login, the dashboard, the admin's static
files from whitenoise; one trade cycle through the worker, checked on the exchange; a clean stop.

The virtualenv is kept under var/ between runs, keyed by the requirement files and the
interpreter, so only the first run on a machine (or a changed lock) pays for the build.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.deploy.processes import PRODUCTION_SECRET_KEY, ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

VENV = ROOT / "var" / "production-venv"
# honcho (the process manager, not part of the app), given a Heroku dyno's 30 s between SIGTERM
# and SIGKILL instead of its own 5 s: a stop is clean when nothing needs the SIGKILL.
HONCHO = [
    sys.executable,
    "-c",
    "import sys, honcho.manager, honcho.command\n"
    "honcho.manager.KILL_WAIT = 30\n"
    "sys.exit(honcho.command.main())",
]
PASSWORD = "smoke-test-password-8e1c"
WAIT_SECONDS = 90
# BTCUSDT on the manual agent every 10 s (the shortest interval), BNBUSDT off, a LONG waiting.
SIGNAL_LONG = (
    "from tests.celery import probe\n"
    "probe.setup(manual=['BTCUSDT'], interval_seconds=10, disabled=['BNBUSDT'])\n"
    "probe.signal(symbol='BTCUSDT', action='LONG')"
)


def _wait_for(
    what: str, check: Callable[[], Any], *, log: Callable[[], str], timeout: float = WAIT_SECONDS
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{log()[-6000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def production_venv() -> Path:
    """A virtualenv with exactly the root requirements.txt installed (built once per lock)."""
    inputs = [ROOT / "requirements.txt", ROOT / "requirements" / "production.lock.txt"]
    key = hashlib.sha256(
        b"".join(path.read_bytes() for path in inputs) + sys.version.encode()
    ).hexdigest()[:16]
    marker = VENV / f".built-{key}"
    if not marker.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        # The root file alone, as a Heroku-style build runs it; its lock turns on hash checking.
        installed = subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", "-r", str(ROOT / "requirements.txt")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
        marker.write_text(f"{time.monotonic() - started:.0f} s to build\n")
    return VENV


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A new, empty database on the server DATABASE_URL names; dropped afterwards."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    name = f"arena_smoke_{uuid.uuid4().hex[:8]}"
    params = {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    try:
        yield f"postgres://{auth}@{params['host']}:{params['port']}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_redis() -> str:
    """The Redis database REDIS_URL names, emptied: no queued task from an earlier run."""
    import redis

    url = os.environ["REDIS_URL"]
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def paper_exchange() -> Iterator[Any]:
    from paper.testing import PaperControl, PaperExchangeServer

    with PaperExchangeServer(port=0, feed="static") as server:
        yield PaperControl(server.url), server.url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Router:
    """Speaks to gunicorn as a Heroku-style router does: the client's https in
    X-Forwarded-Proto; cookies kept by hand, since they are Secure and this hop is plain http."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.origin = f"https://127.0.0.1:{port}"
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {
            "Host": f"127.0.0.1:{self.port}",
            "X-Forwarded-Proto": "https",
            "Origin": self.origin,
            "Referer": self.origin + path,
        }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read()
            for value in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(value).items():
                    self.cookies[name] = morsel.value
            return response.status, {k.lower(): v for k, v in response.getheaders()}, content
        finally:
            connection.close()

    def up(self) -> bool:
        try:
            return self.request("GET", "/admin/login/")[0] == 200
        except OSError:
            return False


def _kill_group(pid: int) -> str:
    """SIGKILL what is left of the process group ``pid`` leads; what that was (ps lines).

    Zombies do not count: they have ended, and only wait for their new parent to reap them.
    """
    listed = subprocess.run(
        ["ps", "-o", "pid,stat,args", "--no-headers", "-g", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    left = "\n".join(line for line in listed if line.split()[1:2] != ["Z"])
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return left


def _run(args: list[str], env: dict[str, str], timeout: float = 180) -> str:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}{result.stderr}"
    return result.stdout + result.stderr


def test_production_when_built_from_requirements_and_started_from_procfile_then_trades_and_stops(
    production_venv: Path,
    fresh_postgres: str,
    empty_redis: str,
    paper_exchange: Any,
    tmp_path: Path,
) -> None:
    paper, paper_url = paper_exchange
    web_port = _free_port()
    env = {
        "PATH": f"{production_venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/"),
        "PYTHONUNBUFFERED": "1",
        # The production variables, and nothing else of this test process.
        "SECRET_KEY": PRODUCTION_SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": fresh_postgres,
        "REDIS_URL": empty_redis,
        "EXCHANGE": "paper",
        "PAPER_EXCHANGE_URL": paper_url,
        # What a Heroku-style router needs (README): it terminates TLS and says so.
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    }
    python = str(production_venv / "bin" / "python")
    no_dotenv = tmp_path / "empty.env"
    no_dotenv.write_text("")
    honcho = [*HONCHO, "--env", str(no_dotenv), "-f", "Procfile"]

    # Build, then release (the Procfile's own line), then one-off commands an operator runs.
    _run([python, "manage.py", "collectstatic", "--no-input"], env)
    released = _run([*honcho, "start", "release"], env)
    assert "Applying trading." in released
    _run(
        [python, "manage.py", "createsuperuser", "--no-input", "--username", "trader"],
        {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD, "DJANGO_SUPERUSER_EMAIL": "t@example.com"},
    )
    _run([python, "manage.py", "loaddata", "defaults"], env)
    _run(
        [python, "manage.py", "shell", "--no-imports", "-c", SIGNAL_LONG],
        env,
    )

    log = (tmp_path / "honcho.log").open("wb")
    arena = subprocess.Popen(
        [*honcho, "start", "--port", str(web_port), "web", "worker", "beat", "sentinel"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def output() -> str:
        return (tmp_path / "honcho.log").read_text(errors="replace")

    try:
        router = Router(web_port)
        _wait_for("gunicorn to serve the login page", router.up, log=output)

        # Log in through the admin's form (CSRF token from the page, as a browser does).
        status, _, page = router.request("GET", "/admin/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1].decode()
        status, headers, _ = router.request(
            "POST",
            "/admin/login/?next=/admin/",
            {"csrfmiddlewaretoken": token, "username": "trader", "password": PASSWORD},
        )
        assert (status, headers.get("location")) == (302, "/admin/"), output()[-3000:]
        assert "max-age=31536000" in headers["strict-transport-security"]

        status, _, admin = router.request("GET", "/admin/")
        assert status == 200
        stylesheet = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', admin)
        assert stylesheet, admin[:2000]
        status, headers, css = router.request("GET", stylesheet[1].decode())
        assert status == 200 and headers["content-type"].startswith("text/css")
        assert "immutable" in headers["cache-control"]  # whitenoise, from the manifest
        assert b"body" in css

        status, _, dashboard = router.request("GET", "/admin/dashboard/")
        assert status == 200, dashboard[:2000]

        # One trade cycle through Beat and the worker: the exchange holds the long and its exits.
        _wait_for(
            "the worker's cycle to open BTCUSDT with its TP and SL on the exchange",
            lambda: (
                [p["symbol"] for p in paper.positions()] == ["BTCUSDT"]
                and len(paper.open_orders()["algo_orders"]) == 2
            ),
            log=output,
        )
        assert arena.poll() is None, f"a process stopped on its own:\n{output()[-6000:]}"
    finally:
        if arena.poll() is None:
            os.killpg(arena.pid, signal.SIGTERM)
        try:
            arena.wait(timeout=45)
        except subprocess.TimeoutExpired:
            arena.kill()
            arena.wait(timeout=10)
        finally:
            log.close()
            # Whatever happened, leave no process behind (each runs in a session of its own).
            children = [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", output())]
            leftovers = [left for pid in children if (left := _kill_group(pid))]

    # A clean stop: every process ended by itself, none left behind, nothing crashed.
    assert arena.returncode is not None
    assert not leftovers, leftovers
    text = output()
    assert "Traceback" not in text, text[-5000:]
    assert "SIGKILL" not in text, text[-3000:]
    # honcho runs each line through a shell: -15 is that shell ending on the SIGTERM sent.
    stopped = dict(re.findall(r"system\s*\| (\w+)\.1 stopped \(rc=(-?\d+)\)", text))
    assert stopped.keys() == {"web", "worker", "beat", "sentinel"}, text[-3000:]
    assert set(stopped.values()) <= {"0", "-15"}, stopped
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", web_port)) != 0
    print(f"\nproduction venv: {next(production_venv.glob('.built-*')).read_text().strip()}")
