"""Production is what every process loads unless development is chosen explicitly."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.deploy.processes import PRODUCTION_SECRET_KEY, ROOT, manage, production_env, python

REPORT = (
    "from django.conf import settings; import json; "
    "print(json.dumps([settings.SETTINGS_MODULE, settings.DEBUG, "
    "settings.SESSION_COOKIE_SECURE if hasattr(settings, 'SESSION_COOKIE_SECURE') else None]))"
)


@pytest.fixture
def collected_static(tmp_path: Path) -> Path:
    """A STATIC_ROOT with a manifest, as the build leaves it (the web process requires one)."""
    (tmp_path / "staticfiles.json").write_text('{"paths": {}, "version": "1.1", "hash": ""}')
    return tmp_path


@pytest.mark.parametrize(
    "entry_point",
    [
        # gunicorn arena.wsgi
        "import arena.wsgi",
        # celery -A arena worker / beat: the app module is imported first
        "import arena",
        "from arena.celery import app",
    ],
)
def test_entry_point_when_no_settings_chosen_then_production_with_debug_off(
    entry_point: str, collected_static: Path
) -> None:
    env = production_env(
        SECRET_KEY=PRODUCTION_SECRET_KEY,
        ALLOWED_HOSTS="example.com",
        STATIC_ROOT=str(collected_static),
    )

    result = python(f"{entry_point}\n{REPORT}", env)

    assert result.returncode == 0, result.stderr
    module, debug, secure_cookie = json.loads(result.stdout.strip().splitlines()[-1])
    assert (module, debug, secure_cookie) == ("arena.settings.production", False, True)


def test_manage_py_when_no_settings_chosen_then_production_with_debug_off() -> None:
    # release, sentinel and every operator command run through manage.py.
    env = production_env(SECRET_KEY=PRODUCTION_SECRET_KEY, ALLOWED_HOSTS="example.com")

    result = manage("shell", "--no-imports", "-c", REPORT, env=env)

    assert result.returncode == 0, result.stderr
    module, debug, _ = json.loads(result.stdout.strip().splitlines()[-1])
    assert (module, debug) == ("arena.settings.production", False)


def test_manage_py_when_no_settings_and_no_secret_key_then_refused_naming_the_way_out() -> None:
    result = manage("check", env=production_env(ALLOWED_HOSTS="example.com"))

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off." in result.stderr
    assert "arena.settings.local" in result.stderr


def test_make_run_when_dry_run_then_every_process_chooses_local_settings() -> None:
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    commands = [
        line
        for line in result.stdout.splitlines()
        if "manage.py" in line or "tools.run_local" in line
    ]
    assert len(commands) == 3, result.stdout
    assert all("DJANGO_SETTINGS_MODULE=arena.settings.local" in line for line in commands)
