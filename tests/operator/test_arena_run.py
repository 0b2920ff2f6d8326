"""A short ``make run`` at high replay speed raises no alert: trades open, close by their exits
and are recorded, and nothing the sentinel or the guard reports is false.

The 10-minute run of the issue, compressed: the replay at 300x, until three positions have closed
(or the deadline), with the rule-based agents as ``make run`` ships them. Three closes keep
the suite's share short; each is a full entry, protection, exit and record.

``make run`` includes the user data stream process: it must be connected, and at least one close
must have been recorded by it from a streamed fill. Not every close: an agent's own close is
recorded by the order path, and the guard's 5 s pass may find a fired exit's position flat in
the few milliseconds before the stream's event is applied (then the stream's attempt finds the
position already closed and changes nothing). Both are correct; only "none by the stream"
would show the stream not doing its work.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.operator.arena_process import arena_env_for, ctrl_c, manage, start, wait_for

SPEED = 300
CLOSES_WANTED = 3
RUN_SECONDS = 420

# The stream process's line for a close it recorded from a streamed fill (not from a reconcile).
STREAM_CLOSE = re.compile(r"\[Stream\] \w+ close recorded \d+ ms after its fill")

PROBE = """
import json
from collections import Counter
from dashboard.selectors import stream_state_latest
from monitoring.models import Alert
from trading.models import Position, TradeEvent
stream = stream_state_latest()
print(json.dumps({
    "closed": Position.objects.filter(status="CLOSED").count(),
    "unrecorded": Position.objects.filter(status="CLOSED", realized_pnl__isnull=True).count(),
    "alerts": [[a.key, a.severity, a.message] for a in Alert.objects.order_by("id")],
    "closes_by": Counter(TradeEvent.objects.filter(kind="CLOSED").values_list("actor", flat=True)),
    "stream": {"state": stream.state, "events": stream.events, "error": stream.error},
}))
"""


def _book(env: dict[str, str]) -> dict:
    out = manage(env, "shell", "--no-imports", "-c", PROBE)
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def _book_with_closes(env: dict[str, str]) -> dict | None:
    book = _book(env)
    return book if book["closed"] >= CLOSES_WANTED else None


def _closes_in_log(log: Path) -> tuple[int, int]:
    """Closes recorded, and of them by the stream from a fill, as the processes printed them.

    Read from the output, not the database: a probe is a Django start, seconds of a CPU the
    arena's six processes need, and polling with it slowed the run it was waiting for."""
    output = log.read_text(errors="replace")
    return output.count("[Close] "), len(STREAM_CLOSE.findall(output))


def _enough_closes(log: Path) -> bool:
    closes, by_stream = _closes_in_log(log)
    return closes >= CLOSES_WANTED and by_stream >= 1


def test_make_run_when_replayed_fast_then_trades_closed_from_the_stream_and_no_alert(
    tmp_path: Path,
) -> None:
    env = arena_env_for(tmp_path, speed=SPEED)
    log = tmp_path / "arena.log"
    process = start(env, log)
    try:
        wait_for(
            lambda: _enough_closes(log),
            timeout=RUN_SECONDS,
            what=f"{CLOSES_WANTED} closes, one of them recorded by the stream",
            log=log,
            process=process,
        )
        # The log line follows the commit; the probe (once, as a rule) reads it in the database.
        book = wait_for(
            lambda: _book_with_closes(env),
            timeout=60,
            what=f"{CLOSES_WANTED} closed positions in the database",
            log=log,
            process=process,
        )
    finally:
        stop_output = ctrl_c(process, log)

    output = log.read_text(errors="replace")
    assert book["alerts"] == [], "\n".join(" | ".join(a) for a in book["alerts"])
    assert book["unrecorded"] == 0
    assert output.count("[Entry] ") >= CLOSES_WANTED and output.count("[Close] ") >= CLOSES_WANTED
    assert " ERROR " not in output and "Traceback" not in output
    assert "ERROR" not in stop_output
    # The stream process ran connected, and recorded closes from streamed fills.
    assert book["stream"]["state"] == "connected", book["stream"]
    assert book["stream"]["events"] >= 1
    assert book["closes_by"].get("stream", 0) >= 1, book["closes_by"]
    assert STREAM_CLOSE.search(output)
