"""A short ``make run`` at high replay speed raises no alert: trades open, close by their exits
and are recorded, and nothing the sentinel or the guard reports is false.

The 10-minute run of the issue, compressed: the replay at 300x, until three positions have closed
(or the deadline), with the rule-based agents as ``make run`` ships them. Three closes keep
the suite's share short; each is a full entry, protection, exit and record.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.operator.arena_process import arena_env_for, ctrl_c, manage, start, wait_for

SPEED = 300
CLOSES_WANTED = 3
RUN_SECONDS = 420

PROBE = """
import json
from monitoring.models import Alert
from trading.models import Position
print(json.dumps({
    "closed": Position.objects.filter(status="CLOSED").count(),
    "unrecorded": Position.objects.filter(status="CLOSED", realized_pnl__isnull=True).count(),
    "alerts": [[a.key, a.severity, a.message] for a in Alert.objects.order_by("id")],
}))
"""


def _book(env: dict[str, str]) -> dict:
    out = manage(env, "shell", "--no-imports", "-c", PROBE)
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def test_make_run_when_replayed_fast_then_trades_closed_and_no_alert(tmp_path: Path) -> None:
    env = arena_env_for(tmp_path, speed=SPEED)
    log = tmp_path / "arena.log"
    process = start(env, log)
    try:
        wait_for(
            lambda: _book(env)["closed"] >= CLOSES_WANTED,
            timeout=RUN_SECONDS,
            what=f"{CLOSES_WANTED} closed positions",
            log=log,
        )
        book = _book(env)
    finally:
        stop_output = ctrl_c(process, log)

    output = log.read_text(errors="replace")
    assert book["alerts"] == [], "\n".join(" | ".join(a) for a in book["alerts"])
    assert book["unrecorded"] == 0
    assert output.count("[Entry] ") >= CLOSES_WANTED and output.count("[Close] ") >= CLOSES_WANTED
    assert " ERROR " not in output and "Traceback" not in output
    assert "ERROR" not in stop_output
