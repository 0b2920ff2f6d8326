"""Run the project's entry points as a deployed process would: a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_SECRET_KEY = "x" * 20 + "-a-long-random-production-secret-key-0123456789"


def production_env(**extra: str) -> dict[str, str]:
    """Only what a host provides plus the variables given: no DJANGO_SETTINGS_MODULE, no DEBUG."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env.update(extra)
    return env


def run(
    args: list[str], env: dict[str, str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", code], env)


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "manage.py", *args], env)
