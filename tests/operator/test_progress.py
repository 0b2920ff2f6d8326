"""Long commands show their progress: download_candles per page, emergency_close per step."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from django.core.management import call_command

from exchange.candles import candles_download
from trading.gateway import exchange_gateway


class _Recording(StringIO):
    """An output that notes what the exchange held when each line was written."""

    def __init__(self, market: object) -> None:
        super().__init__()
        self.market = market
        self.lines: list[tuple[str, int]] = []

    def write(self, text: str) -> int:
        if text.strip():
            self.lines.append((text.strip(), len(self.market.positions())))
        return super().write(text)


def test_candles_download_when_several_pages_then_progress_after_each(
    paper: object, db: None, tmp_path: Path
) -> None:
    calls: list[tuple[int, int]] = []

    paths = candles_download(
        symbol="BTCUSDT",
        days=1,
        interval="1m",
        out_dir=tmp_path,
        gateway=exchange_gateway(),
        page_size=300,
        progress=lambda done, expected: calls.append((done, expected)),
    )

    assert len(calls) >= 4 and paths
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert {expected for _, expected in calls} == {1440}


def test_download_candles_command_when_run_then_prints_progress(
    paper: object, db: None, tmp_path: Path
) -> None:
    out = StringIO()

    call_command("download_candles", "BTCUSDT", "--days", "1", "--out", str(tmp_path), stdout=out)

    lines = out.getvalue().splitlines()
    progress = [line for line in lines if line.strip().endswith("%)")]
    assert progress and "/ 1440 candles (" in progress[0]
    assert lines.index(progress[-1]) < next(i for i, x in enumerate(lines) if x.startswith("wrote"))


def test_emergency_close_command_when_run_then_each_step_printed_as_it_happens(
    funded_market, open_position
) -> None:
    open_position("BTCUSDT", "LONG")
    open_position("BNBUSDT", "SHORT")
    out = _Recording(funded_market)

    call_command("emergency_close", "--yes", "--reason", "drill", stdout=out)

    texts = [text for text, _ in out.lines]
    first_close = next(i for i, t in enumerate(texts) if "[Close] BNBUSDT EMERGENCY" in t)
    second_close = next(i for i, t in enumerate(texts) if "[Close] BTCUSDT EMERGENCY" in t)
    report = texts.index("Trading halted.")
    halted = next(i for i, t in enumerate(texts) if "trading HALTED by shell:" in t)
    assert halted < first_close < second_close < report
    # Printed while it happened: the first close was shown with the other position still open.
    assert out.lines[first_close][1] == 1
    assert out.lines[halted][1] == 2
