"""``paper_exchange --candles DIR``: a multi-day folder of kline files, as download_candles
writes it, replayed in full (days joined, gaps filled, symbols in step)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.candles import KLINE_HEADER
from paper.candles import MINUTE_MS, generate, load_dir

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 3
GAP = range(1440 + 600, 1440 + 630)  # 30 minutes of BTCUSDT missing on the second day


def write_folder(folder: Path) -> dict[str, list]:
    """Three days of BTCUSDT and BNBUSDT, one CSV per symbol and UTC day with Binance's header
    (the layout of ``download_candles``); BTCUSDT misses half an hour on day two."""
    written = {}
    for symbol in ("BTCUSDT", "BNBUSDT"):
        candles = generate(
            symbol, start_ms=int(START.timestamp() * 1000), minutes=DAYS * 1440, seed=7
        )
        written[symbol] = candles
        for day in range(DAYS):
            rows = [
                c
                for i, c in enumerate(candles[day * 1440 : (day + 1) * 1440], start=day * 1440)
                if not (symbol == "BTCUSDT" and i in GAP)
            ]
            name = f"{symbol}-1m-{(START + timedelta(days=day)).date().isoformat()}.csv"
            lines = [KLINE_HEADER] + [",".join(str(v) for v in c.to_binance()) for c in rows]
            (folder / name).write_text("\n".join(lines) + "\n")
    return written


def test_load_dir_when_folder_has_days_per_symbol_then_joined_in_order_and_gap_filled(
    tmp_path: Path,
) -> None:
    written = write_folder(tmp_path)

    loaded = load_dir(tmp_path)

    assert set(loaded) == {"BTCUSDT", "BNBUSDT"}
    for symbol, rows in loaded.items():
        assert len(rows) == DAYS * 1440
        assert [c.open_time for c in rows] == [
            written[symbol][0].open_time + i * MINUTE_MS for i in range(DAYS * 1440)
        ]
    btc = loaded["BTCUSDT"]
    assert btc[: GAP.start] == written["BTCUSDT"][: GAP.start]
    assert btc[GAP.stop :] == written["BTCUSDT"][GAP.stop :]
    before = written["BTCUSDT"][GAP.start - 1].close
    assert all(
        (c.open, c.high, c.low, c.close, c.volume) == (before, before, before, before, 0)
        for c in btc[GAP.start : GAP.stop]
    )
    assert loaded["BNBUSDT"] == written["BNBUSDT"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_price(url: str, symbol: str) -> Decimal | None:
    """The last trade price: the replayed close itself (the mark is smoothed away from it)."""
    try:
        with urllib.request.urlopen(f"{url}/fapi/v1/ticker/price?symbol={symbol}", timeout=2) as r:
            return Decimal(json.loads(r.read())["price"])
    except OSError:
        return None


@pytest.fixture
def run_paper_exchange():
    processes: list[subprocess.Popen] = []

    def run(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "paper_exchange", "--stream-port", "0", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield run
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def test_paper_exchange_when_candles_folder_given_then_replays_every_day_to_the_last_close(
    tmp_path: Path, run_paper_exchange
) -> None:
    written = write_folder(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    last = {s: rows[-1].close for s, rows in written.items()}

    # Fast enough that the three days play out within seconds.
    run_paper_exchange(
        "--port", str(port), "--feed", "replay", "--speed", "2000000", "--candles", str(tmp_path)
    )

    deadline = time.monotonic() + 60
    seen: dict[str, Decimal | None] = {}
    while time.monotonic() < deadline:
        seen = {s: last_price(url, s) for s in last}
        if seen == last:
            break
        time.sleep(0.2)
    assert seen == last, "the replay did not reach the last close of the third day"


def test_paper_exchange_when_candles_folder_has_no_kline_files_then_refuses_clearly(
    tmp_path: Path, run_paper_exchange
) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")

    process = run_paper_exchange("--port", str(free_port()), "--candles", str(tmp_path))
    output, _ = process.communicate(timeout=60)

    assert process.returncode != 0
    assert "no 1-minute kline files of a known symbol" in output


def test_paper_exchange_when_candles_folder_given_then_replay_starts_on_the_first_day(
    tmp_path: Path, run_paper_exchange
) -> None:
    written = write_folder(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The replay primes 500 minutes of history and starts at the last one's close: on day one.
    first_day = {s: rows[499].close for s, rows in written.items()}

    process = run_paper_exchange(
        "--port", str(port), "--feed", "replay", "--speed", "1", "--candles", str(tmp_path)
    )

    deadline = time.monotonic() + 60
    seen: dict[str, Decimal | None] = {}
    while time.monotonic() < deadline and seen != first_day:
        seen = {s: last_price(url, s) for s in first_day}
        time.sleep(0.2)
    assert seen == first_day
    process.terminate()
    output, _ = process.communicate(timeout=10)
    assert "candles: BNBUSDT 4320 minutes, BTCUSDT 4320 minutes" in output
