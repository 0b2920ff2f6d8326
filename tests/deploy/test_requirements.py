"""Heroku-style builds find the app; every package, transitive ones too, is pinned with hashes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.processes import ROOT

REQUIREMENTS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _direct_pins(path: Path) -> dict[str, str]:
    """The pins of a requirements file and of the files it includes with -r."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            pins.update(_direct_pins(path.parent / line[3:].strip()))
        elif match := PIN.match(line):
            pins[_name(match[1])] = match[2]
    return pins


def _locked(path: Path) -> dict[str, tuple[str, int]]:
    """Each locked package: its version and how many hashes it carries."""
    locked: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            current = _name(match[1])
            locked[current] = (match[2], 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = locked[current]
            locked[current] = (version, hashes + 1)
        elif line and not line.startswith((" ", "#")):
            pytest.fail(f"{path.name}: unexpected line {line!r}")
    return locked


def test_root_requirements_when_built_by_heroku_then_production_lock_only() -> None:
    lines = [
        line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    assert lines == ["-r requirements/production.lock.txt"]
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


@pytest.mark.parametrize(
    ("source", "lock"), [("production.txt", "production.lock.txt"), ("dev.txt", "dev.lock.txt")]
)
def test_lock_when_compared_with_direct_pins_then_same_versions_and_every_package_hashed(
    source: str, lock: str
) -> None:
    direct = _direct_pins(REQUIREMENTS / source)
    locked = _locked(REQUIREMENTS / lock)

    stale = {
        name: (version, locked.get(name, ("missing", 0))[0])
        for name, version in direct.items()
        if locked.get(name, ("", 0))[0] != version
    }
    assert not stale, f"{lock} is out of date; run `make lock`: {stale}"
    assert len(locked) > len(direct)  # transitive packages are pinned too
    assert all(hashes for _, hashes in locked.values())


def test_dev_lock_when_compared_with_production_lock_then_same_versions_for_shared_packages() -> (
    None
):
    production = _locked(REQUIREMENTS / "production.lock.txt")
    dev = _locked(REQUIREMENTS / "dev.lock.txt")

    assert set(production) <= set(dev)
    assert {name: dev[name][0] for name in production} == {
        name: version for name, (version, _) in production.items()
    }


def test_make_install_when_dry_run_then_dev_lock_installed_with_hashes_required() -> None:
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "--no-print-directory", ".venv/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    commands = result.stdout.replace("\\\n", " ").splitlines()
    install = [line for line in commands if "pip install" in line]
    assert install, result.stdout
    assert "--require-hashes" in install[0]
    assert "-r requirements/dev.lock.txt" in install[0]
