"""sync_symbols and download_candles against the paper exchange."""

from __future__ import annotations

import copy
import csv
import itertools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from exchange.candles import KLINE_HEADER, candles_download
from monitoring.models import Alert
from paper import symbols as paper_symbols
from risk.models import RiskProfile, RuleChange
from risk.services import rule_save
from trading.gateway import exchange_gateway
from trading.models import Symbol
from trading.symbol_sync import symbol_sync_filters

pytestmark = pytest.mark.django_db


def test_sync_symbols_when_filters_differ_then_reports_saves_and_records_them(
    paper: object, defaults: None, capsys: pytest.CaptureFixture[str]
) -> None:
    Symbol.objects.filter(name="BTCUSDT").update(min_notional=Decimal("50"), max_leverage=20)

    call_command("sync_symbols")

    out = capsys.readouterr().out
    assert "BTCUSDT: min_notional: 50 → 5, max_leverage: 20 → 125" in out
    assert "BNBUSDT: unchanged" in out
    btc = Symbol.objects.get(name="BTCUSDT")
    assert (btc.min_notional, btc.max_leverage) == (Decimal("5"), 125)
    assert btc.filters_synced_at is not None
    changes = RuleChange.objects.filter(changed_by="sync_symbols")
    assert sorted(changes.values_list("object_repr", "field")) == [
        ("BTCUSDT", "max_leverage"),
        ("BTCUSDT", "min_notional"),
    ]


def test_sync_symbols_when_nothing_differs_then_no_history_rows(
    paper: object, defaults: None, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("sync_symbols")

    assert "0 of 6 symbols changed." in capsys.readouterr().out
    assert not RuleChange.objects.filter(changed_by="sync_symbols").exists()


def serve_btc_brackets_up_to(monkeypatch: pytest.MonkeyPatch, leverage: int) -> None:
    """The paper exchange (in this process) serves BTCUSDT's brackets capped at ``leverage``."""
    lowered = copy.deepcopy(paper_symbols.leverage_brackets())
    for row in lowered:
        if row["symbol"] == "BTCUSDT":
            for bracket in row["brackets"]:
                bracket["initialLeverage"] = leverage
    monkeypatch.setattr(paper_symbols, "leverage_brackets", lambda: lowered)


def test_sync_symbols_when_bracket_below_active_leverage_then_filters_saved_and_symbol_disabled(
    paper: object,
    defaults: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The exchange now allows BTCUSDT 1x; the active profile trades it at 2x.
    serve_btc_brackets_up_to(monkeypatch, 1)
    Symbol.objects.filter(name="BTCUSDT").update(min_notional=Decimal("50"))
    assert RiskProfile.objects.get(is_active=True).leverage == 2

    call_command("sync_symbols")

    out = capsys.readouterr().out
    assert "BTCUSDT: min_notional: 50 → 5, max_leverage: 125 → 1, enabled: True → False" in out
    btc = Symbol.objects.get(name="BTCUSDT")
    assert (btc.min_notional, btc.max_leverage, btc.enabled) == (Decimal("5"), 1, False)
    changes = RuleChange.objects.filter(changed_by="sync_symbols")
    assert sorted(changes.values_list("object_repr", "field")) == [
        ("BTCUSDT", "enabled"),
        ("BTCUSDT", "max_leverage"),
        ("BTCUSDT", "min_notional"),
    ]
    assert changes.get(field="enabled").new_value == "False"
    assert changes.get(field="max_leverage").new_value == "1"
    alert = Alert.objects.get(key="sync.leverage_conflict.BTCUSDT")
    assert "1x" in alert.message and "2x of the active profile default" in alert.message
    assert "lower that profile's leverage to 1x or less" in alert.message
    # Nothing else moved: the profile keeps its leverage, the other symbols stay enabled.
    assert RiskProfile.objects.get(is_active=True).leverage == 2
    assert Symbol.objects.get(name="BNBUSDT").enabled

    call_command("sync_symbols")

    assert "BTCUSDT: unchanged" in capsys.readouterr().out
    assert RuleChange.objects.filter(changed_by="sync_symbols").count() == 3
    assert Alert.objects.filter(key="sync.leverage_conflict.BTCUSDT").count() == 1


def test_sync_symbols_when_bracket_below_own_profile_leverage_then_saved_disabled_and_kept_off(
    paper: object, defaults: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = RiskProfile.objects.create(name="btc", leverage=5)
    Symbol.objects.filter(name="BTCUSDT").update(risk_profile=own)
    serve_btc_brackets_up_to(monkeypatch, 3)

    results = symbol_sync_filters(actor="sync_symbols")

    btc = Symbol.objects.get(name="BTCUSDT")
    assert (btc.max_leverage, btc.enabled) == (3, False)
    assert "5x of its own profile btc" in next(r.conflict for r in results if r.symbol == "BTCUSDT")
    assert Alert.objects.filter(key="sync.leverage_conflict.BTCUSDT").count() == 1
    assert RiskProfile.objects.get(name="btc").leverage == 5
    # Enabling it again is refused until the operator lowers the profile's leverage.
    btc.enabled = True
    with pytest.raises(ValidationError, match="uses 5x, above this symbol's maximum of 3x"):
        rule_save(instance=btc, actor="trader")


def read_klines(paths: list[Path]) -> list[list[str]]:
    rows = []
    for path in paths:
        with path.open() as handle:
            reader = csv.reader(handle)
            assert next(reader) == KLINE_HEADER.split(",")
            rows.extend(reader)
    return rows


def test_download_candles_when_one_day_then_binance_kline_files_per_utc_day(
    paper: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("download_candles", "btcusdt", "--days", "1", "--out", str(tmp_path))

    files = sorted(tmp_path.glob("BTCUSDT-1m-*.csv"))
    assert files and len(files) <= 2  # one day back from now spans one or two UTC dates
    assert capsys.readouterr().out.count("wrote ") == len(files)
    rows = read_klines(files)
    assert len(rows) >= 900  # the paper exchange keeps 1000 minutes of history
    assert all(len(r) == 12 for r in rows)
    for path in files:
        day = path.stem.removeprefix("BTCUSDT-1m-")
        with path.open() as handle:
            first = next(csv.reader(handle.readlines()[1:]))
        assert datetime.fromtimestamp(int(first[0]) / 1000, tz=UTC).date().isoformat() == day


def test_download_candles_when_more_than_one_page_then_no_candle_missing_or_twice(
    paper: object, tmp_path: Path
) -> None:
    gateway = exchange_gateway()

    paths = candles_download(
        symbol="BNBUSDT", days=1, interval="1m", out_dir=tmp_path, gateway=gateway, page_size=300
    )

    open_times = [int(r[0]) for r in read_klines(paths)]
    assert len(open_times) >= 900
    assert all(b - a == 60_000 for a, b in itertools.pairwise(open_times))
    assert paper.stats()["requests"]["GET /fapi/v1/klines"] >= 4


def test_download_candles_when_days_out_of_range_then_command_error(paper: object) -> None:
    with pytest.raises(Exception, match="--days must be between 1 and 365"):
        call_command("download_candles", "BTCUSDT", "--days", "0")
