"""The fault soak, short: the arena's processes on the replay feed with random faults on every
endpoint and random SIGKILLs; no position on the exchange ever stays without both exits longer
than one guard interval plus one entry round trip (``make bench`` runs the 10-minute version)."""

from __future__ import annotations

from pathlib import Path

from bench.soak import soak_run

SOAK_SECONDS = 60


def test_soak_when_random_faults_and_kills_then_no_position_naked_longer_than_target(
    tmp_path: Path,
) -> None:
    # Act
    result = soak_run(seconds=SOAK_SECONDS, workdir=tmp_path, seed=11, kill_every=(10.0, 25.0))

    # Assert: it traded, it was attacked, and protection held within the target
    summary = "\n".join(result.lines())
    assert result.positions_seen >= 3, summary
    assert result.faults >= 10 and sum(result.kills.values()) >= 2, summary
    assert result.samples >= SOAK_SECONDS - 5, summary
    assert result.max_naked <= result.target, summary
