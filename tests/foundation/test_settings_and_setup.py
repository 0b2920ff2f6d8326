"""Settings refuse unsafe production set-ups; defaults load twice; bootstrap never overwrites."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from risk.models import RiskProfile
from trading.models import Symbol

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean_env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE"}}
    clean_env.pop("SECRET_KEY", None)
    clean_env.pop("DEBUG", None)
    clean_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests only
    clean_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_when_production_environment_then_no_issues() -> None:
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="x" * 20 + "-a-long-random-production-secret-key-0123456789",
        ALLOWED_HOSTS="example.com",
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_start_when_debug_off_and_no_secret_key_then_refused_with_message() -> None:
    result = _manage("check", DEBUG="0", ALLOWED_HOSTS="example.com")

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off." in result.stderr


def test_start_when_exchange_unknown_then_refused_with_message() -> None:
    result = _manage("check", DEBUG="1", EXCHANGE="kraken")

    assert result.returncode != 0
    assert "EXCHANGE must be 'paper' or 'binance'" in result.stderr


def test_loaddata_defaults_when_loaded_twice_then_same_rules(db: None) -> None:
    call_command("loaddata", "defaults", verbosity=0)
    first = list(Symbol.objects.values().order_by("pk"))

    call_command("loaddata", "defaults", verbosity=0)

    assert list(Symbol.objects.values().order_by("pk")) == first
    assert RiskProfile.objects.filter(is_active=True).count() == 1
    assert set(Symbol.objects.filter(enabled=True).values_list("name", flat=True)) == {
        "BTCUSDT",
        "BNBUSDT",
    }


def test_bootstrap_when_rules_edited_then_not_overwritten(defaults: None) -> None:
    RiskProfile.objects.filter(name="default").update(leverage=3)

    call_command("bootstrap", verbosity=0)

    assert RiskProfile.objects.get(name="default").leverage == 3


@pytest.mark.parametrize(
    "name", ["BTCUSDT", "BNBUSDT", "ETHUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"]
)
def test_default_symbols_when_loaded_then_each_passes_its_own_validation(
    defaults: None, name: str
) -> None:
    Symbol.objects.get(name=name).full_clean()


def test_bootstrap_when_fresh_local_replay_then_cycles_tuned_and_scheduled(db: None) -> None:
    from django_celery_beat.models import PeriodicTask

    from trading.models import Strategy

    call_command("bootstrap", "--replay-speed", "60", verbosity=0)

    strategy = Strategy.objects.get(symbol__name="BTCUSDT")
    assert strategy.interval_seconds == 30
    assert strategy.parameters["cross_lookback"] == 30
    cycle = PeriodicTask.objects.get(name="cycle: BTCUSDT")
    assert (cycle.enabled, cycle.interval.every, cycle.interval.period) == (True, 30, "seconds")
    assert not PeriodicTask.objects.get(name="cycle: ETHUSDT").enabled
