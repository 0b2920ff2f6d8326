"""With DEBUG off, static files come from the build's collectstatic, or the web refuses to start."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.processes import PRODUCTION_SECRET_KEY, manage, production_env, python

ADMIN_LOGIN = """
import arena.wsgi, json
from django.test import Client
response = Client().get("/admin/login/", HTTP_HOST="example.com", secure=True)
print(json.dumps([response.status_code, "/static/admin/css/base." in response.text]))
"""


def _env(static_root: Path) -> dict[str, str]:
    return production_env(
        SECRET_KEY=PRODUCTION_SECRET_KEY, ALLOWED_HOSTS="example.com", STATIC_ROOT=str(static_root)
    )


def test_web_start_when_static_not_collected_then_refused_with_clear_message(
    tmp_path: Path,
) -> None:
    result = python("import arena.wsgi", _env(tmp_path / "staticfiles"))

    assert result.returncode != 0
    assert "Static files are not collected" in result.stderr
    assert "collectstatic --no-input" in result.stderr


def test_admin_login_when_static_collected_then_served_with_hashed_names(tmp_path: Path) -> None:
    env = _env(tmp_path / "staticfiles")
    collected = manage("collectstatic", "--no-input", env=env)
    assert collected.returncode == 0, collected.stderr

    result = python(ADMIN_LOGIN, env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[200, true]"
