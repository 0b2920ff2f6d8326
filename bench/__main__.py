"""Run the benchmarks: ``python -m bench [--positions 1,10,50,200] [--passes 5] [--replay 30]``.

Prints a table and writes it to ``bench/results.md``. Everything runs in this process against an
in-process paper exchange and a throwaway database (see ``bench.env``).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import env

RESULTS = Path(__file__).resolve().parent / "results.md"
ENTRY_SYMBOL = "BTCUSDT"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--positions", default="1,10,50,200")
    parser.add_argument("--passes", type=int, default=5, help="guard passes measured per size")
    parser.add_argument("--entries", type=int, default=10, help="entry-path runs")
    parser.add_argument("--replay", type=float, default=30.0, help="seconds of replay")
    parser.add_argument("--replay-speed", type=float, default=600.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = sorted({int(n) for n in args.positions.split(",")})
    logging.basicConfig(level=logging.WARNING)

    synthetic_needed = max(0, max(sizes) - (env.REAL_SYMBOLS - 1))  # BTCUSDT is kept for entries
    synthetic = env.synthetic_symbols(synthetic_needed)
    lines: list[str] = []
    with env.bench_database() as engine:
        from paper.testing import PaperControl, PaperExchangeServer

        with PaperExchangeServer(port=0, feed="static", extra_symbols=len(synthetic)) as server:
            control = PaperControl(server.url)
            unlimited(control)
            env.django_setup(paper_url=server.url)
            lines += header(engine=engine, synthetic=len(synthetic))
            lines += entry_section(control=control, runs=args.entries)
            guard_rows, guard_lines = guard_section(
                control=control, sizes=sizes, synthetic=synthetic, passes=args.passes
            )
            lines += guard_lines
        lines += replay_section(seconds=args.replay, speed=args.replay_speed, guard_rows=guard_rows)
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.write_text(text)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


def unlimited(control) -> None:
    """Lift paper's weight and order-count limits: weight is measured, not enforced, here."""
    control.configure(weight_limit_1m=10**9, orders_10s=10**9, orders_1m=10**9)
    control.set_balance("USDT", "1000000")


def header(*, engine: str, synthetic: int) -> list[str]:
    now = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        "# arena benchmarks",
        "",
        f"Run {now} on {platform.python_implementation()} {platform.python_version()}, "
        f"database {engine}, paper exchange in-process (client and server share one process "
        "and the GIL: wall times are a ceiling, not a best case). ccxt's client-side throttle "
        "is off; the paper exchange counts weight as Binance does.",
        "",
        f"Paper lists {env.REAL_SYMBOLS} symbols and allows one position per symbol (one-way "
        f"mode); the exchange was started with {synthetic} synthetic clones of {env.TEMPLATE} "
        "(`extra_symbols`, paper/symbols.py).",
        "",
    ]


def entry_section(*, control, runs: int) -> list[str]:
    from bench.measure import entry_measure

    row = entry_measure(symbol_name=ENTRY_SYMBOL, runs=runs, control=control)
    endpoints = ", ".join(f"{k} ×{v}" for k, v in sorted(row.by_endpoint.items()))
    return [
        "## Entry path: decision → entry + TP + SL acknowledged",
        "",
        "| runs | requests (round trips) | wall ms, median | wall ms, max |",
        "|---:|---:|---:|---:|",
        f"| {row.runs} | {row.requests:g} | {row.wall_ms_median:.0f} | {row.wall_ms_max:.0f} |",
        "",
        f"Requests of the last run: {endpoints}.",
        "",
    ]


def guard_section(*, control, sizes: list[int], synthetic: list[str], passes: int):
    from bench.measure import guard_measure, positions_open
    from trading.models import Position, Symbol

    env.symbols_enable(synthetic, max_open_positions=max(sizes) + 1)
    names = list(
        Symbol.objects.exclude(name=ENTRY_SYMBOL).order_by("id").values_list("name", flat=True)
    )
    rows, failures = [], []
    for size in sizes:
        have = Position.objects.filter(status=Position.Status.OPEN).count()
        if size > have:
            _, failed = positions_open(names=names[have:size], control=control)
            failures += failed
        have = Position.objects.filter(status=Position.Status.OPEN).count()
        rows.append(guard_measure(positions=have, passes=passes, control=control))
    lines = [
        f"## Guard pass by open positions (median of {passes} passes after a warm-up)",
        "",
        "| open positions | exchange requests | request weight | DB queries | wall ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.positions} | {row.requests:g} | {row.weight:g} | {row.queries:g} "
            f"| {row.wall_ms:.0f} |"
        )
    first, last = rows[0], rows[-1]
    lines += [
        "",
        f"Ratio {last.positions} : {first.positions} positions — requests "
        f"{_ratio(last.requests, first.requests)}, weight {_ratio(last.weight, first.weight)}, "
        f"queries {_ratio(last.queries, first.queries)}, wall time "
        f"{_ratio(last.wall_ms, first.wall_ms)}.",
        "",
    ]
    errors = sorted({e for row in rows for e in row.errors})
    if errors or failures:
        lines += ["Problems seen:", ""]
        lines += [f"- guard error: {e}" for e in errors]
        lines += [f"- could not open: {f}" for f in failures[:10]]
        lines.append("")
    return rows, lines


def replay_section(*, seconds: float, speed: float, guard_rows) -> list[str]:
    from bench.measure import replay_measure, weight_share
    from paper.testing import PaperControl, PaperExchangeServer
    from trading.models import Symbol

    # A fresh exchange playing the shipped candles, and a flat book for it.
    env.book_clear(reason="bench: a fresh exchange replays the shipped candles")
    Symbol.objects.exclude(name__in=REAL_NAMES).update(enabled=False)
    Symbol.objects.filter(name__in=REAL_NAMES).update(enabled=True)
    from django.conf import settings

    # The real six only: the synthetic symbols' rows are disabled above.
    with PaperExchangeServer(port=0, feed="replay", speed=speed, extra_symbols=0) as server:
        control = PaperControl(server.url)
        unlimited(control)
        control.set_balance("USDT", "10000")
        settings.PAPER_EXCHANGE_URL = server.url
        row = replay_measure(
            seconds=seconds, control=control, market_clock=server.exchange.feed.market_time
        )
    per_pass = max(r.weight for r in guard_rows)
    per_minute, share = weight_share(guard_weight_per_pass=per_pass)
    bad = {c: n for c, n in row.rejections.items() if c in ("-1111", "-4164", "-4005", "-4003")}
    return [
        f"## Replay: decision → order → fill → guard over the shipped candles ({speed:g}× speed)",
        "",
        "| wall s | trade cycles | guard passes | cycles / s | positions opened | closed "
        "| failed cycles | precision/size rejections |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {row.seconds:.1f} | {row.cycles} | {row.guard_passes} | "
        f"{row.cycles_per_second:.1f} | {row.opened} | {row.closed} | {row.failed} | "
        f"{bad or 'none'} |",
        "",
        f"All rejections by code: {row.rejections or 'none'}.",
        "",
        "## Weight budget",
        "",
        f"The guard's steady pass weighs 5 plus one per symbol holding a position (40 from 40 "
        f"symbols on); the heaviest measured pass weighed {per_pass:g}, which every 5 s would be "
        f"{per_minute:.0f} of Binance's 2,400 weight per minute (**{share:.0%}**), before its "
        "five-minute sweep and minute balance read, trade cycles (klines, entries) and the "
        "sentinel. `python -m bench.stream --weight-only` measures the guard per minute with "
        "its cadences.",
    ]


REAL_NAMES = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


if __name__ == "__main__":
    sys.exit(main())
