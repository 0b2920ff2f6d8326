"""The entry path's round trips: ``python -m bench.entry [--runs 10] [--rtt-ms 50]``.

From the decision to the entry acknowledged, and to both exits (stop-loss and take-profit)
acknowledged, counted in round trips (requests sent one after another; requests in flight
together count once) and in wall time, in two cases:

- held: a trade cycle whose agent reads the market to decide (one klines request, as the rule
  and LLM agents do); what the entry needs is read meanwhile (``EntryReadAhead``), or held.
- cold: ``position_open`` called at the decision with nothing held (a manual open): the
  symbol's state and the balance are read first, concurrently.

Each case runs with the paper exchange in-process (sub-millisecond answers) and with
``--rtt-ms`` added to every request (a server near Binance sees 5-50 ms), where the round trips
show in the wall time. Each run's position is closed afterwards, outside the measurement.
Figures to stdout and ``var/bench-entry.md``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench import env

OUTPUT = Path("var/bench-entry.md")
SYMBOL = "BTCUSDT"


@dataclass
class Run:
    entry_round_trips: int
    protected_round_trips: int
    entry_ms: float
    protected_ms: float
    actions: list[str] = field(default_factory=list)


@dataclass
class Row:
    case: str
    rtt_ms: float
    runs: list[Run]

    def median(self, name: str) -> float:
        return statistics.median(getattr(r, name) for r in self.runs)

    def worst(self, name: str) -> float:
        return max(getattr(r, name) for r in self.runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.entry", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows: list[Row] = []
    with env.bench_database() as engine:
        from paper.testing import PaperControl, PaperExchangeServer

        with PaperExchangeServer(port=0, feed="static", extra_symbols=0) as server:
            control = PaperControl(server.url)
            control.configure(weight_limit_1m=10**9, orders_10s=10**9, orders_1m=10**9)
            control.set_price(SYMBOL, "100000")
            control.set_balance("USDT", "1833.33")
            env.django_setup(paper_url=server.url)
            for rtt in (0.0, args.rtt_ms):
                for case in ("held", "cold"):
                    runs = [_run(case=case, rtt_ms=rtt, control=control) for _ in range(args.runs)]
                    rows.append(Row(case, rtt, runs))
    text = "\n".join(_report(engine=engine, rows=rows)) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


def _run(*, case: str, rtt_ms: float, control: Any) -> Run:
    from django.utils import timezone

    from signals import cycles
    from trading.models import AccountBalanceHeld, ExchangeRequest, Position, Symbol
    from trading.services import position_close, position_open

    symbol = Symbol.objects.get(name=SYMBOL)
    gateway = env.fast_gateway()
    gateway.check_account_mode()  # as any running worker has: it is checked every 5 minutes
    if case == "cold":
        AccountBalanceHeld.objects.all().delete()
    mark = ExchangeRequest.objects.order_by("-id").values_list("id", flat=True).first() or 0
    control.clear_faults()
    if rtt_ms:
        control.faults(kind="latency", path="/fapi/", seconds=rtt_ms / 1000, count=10**6)
    decided: list[datetime] = []

    def decide(*, symbol, gateway) -> Any:
        from signals.types import Decision

        gateway.fetch_candles(symbol=symbol.name, interval="1m", limit=100)
        decided.append(timezone.now())
        return Decision(action="LONG", reason="bench")

    if case == "held":
        real_decide, cycles._decide = cycles._decide, decide
        try:
            outcome = cycles.trade_cycle_run(symbol_id=symbol.pk, gateway=gateway)
        finally:
            cycles._decide = real_decide
        opened = outcome.opened
    else:
        decided.append(timezone.now())
        opened = position_open(symbol=symbol, side="LONG", reason="bench", gateway=gateway)
    control.clear_faults()
    if opened is None or not opened.ok:
        raise RuntimeError(f"entry bench ({case}): not opened: {opened}")
    sent = list(ExchangeRequest.objects.filter(id__gt=mark).order_by("id"))
    run = _measure(sent=sent, decided=decided[0])
    position = Position.objects.get(symbol=symbol, status=Position.Status.OPEN)
    closed = position_close(position=position, reason="MANUAL", forced_event=True, gateway=gateway)
    if not closed.ok:
        raise RuntimeError(f"entry bench: could not close: {closed}")
    return run


def _measure(*, sent: list, decided: datetime) -> Run:
    """Round trips and wall time from ``decided`` to the entry's answer and to both exits'."""
    after = [r for r in sent if _started(r) >= decided - timedelta(milliseconds=1)]
    entry = next(r for r in after if r.action == "create_market_order")
    exits = [r for r in after if r.action == "create_exit_order"]
    protected = max(r.created_at for r in exits)
    to_entry = [r for r in after if r.created_at <= entry.created_at]
    to_protected = [r for r in after if r.created_at <= protected]
    return Run(
        entry_round_trips=_round_trips(to_entry),
        protected_round_trips=_round_trips(to_protected),
        entry_ms=(entry.created_at - decided).total_seconds() * 1000,
        protected_ms=(protected - decided).total_seconds() * 1000,
        actions=[r.action for r in to_protected],
    )


def _started(request) -> datetime:
    return request.created_at - timedelta(milliseconds=request.latency_ms)


def _round_trips(requests: list) -> int:
    """Requests one after another: a request sent before the previous wave's first answer is
    in flight with it and joins that wave."""
    waves, wave_end = 0, None
    for request in sorted(requests, key=_started):
        if wave_end is None or _started(request) >= wave_end:
            waves += 1
            wave_end = request.created_at
        else:
            wave_end = min(wave_end, request.created_at)
    return waves


def _report(*, engine: str, rows: list[Row]) -> list[str]:
    import platform

    timed = [r for r in rows if r.rtt_ms]
    rtt = timed[0].rtt_ms if timed else 0
    lines = [
        "# Entry path: decision → entry acknowledged → both exits acknowledged",
        "",
        f"Python {platform.python_version()}, {engine}, paper exchange in-process; "
        f"{len(rows[0].runs)} runs per line, median (worst). Round trips are counted with "
        f"{rtt:g} ms added to every request, where requests sent one after another and "
        "requests in flight together tell apart.",
        "",
        "| case | added per request | round trips to entry | round trips to both exits "
        "| ms to entry | ms to both exits |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        trips = "| - | - "
        if row.rtt_ms:
            trips = (
                f"| {row.median('entry_round_trips'):g} ({row.worst('entry_round_trips'):g}) "
                f"| {row.median('protected_round_trips'):g} "
                f"({row.worst('protected_round_trips'):g}) "
            )
        lines.append(
            f"| {row.case} | {row.rtt_ms:g} ms {trips}"
            f"| {row.median('entry_ms'):.0f} ({row.worst('entry_ms'):.0f}) "
            f"| {row.median('protected_ms'):.0f} ({row.worst('protected_ms'):.0f}) |"
        )
    lines.append("")
    for row in timed:
        lines.append(f"Requests after the decision, {row.case}: {', '.join(row.runs[-1].actions)}.")
    lines += [
        "",
        "held: a cycle whose agent reads klines to decide; the symbol's state (and the balance, "
        "stale after the previous run's close) is read meanwhile. cold: position_open at the "
        "decision with nothing held.",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
