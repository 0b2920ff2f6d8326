"""sync_symbols and download_candles against the paper exchange."""

from __future__ import annotations

import csv
import itertools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

from risk.models import RuleChange
from trading.exchange import exchange_gateway
from trading.models import Symbol
from trading.services import KLINE_HEADER, candles_download

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
