"""Movers of the same positions in a separate (spawned) process, released round by round by a
shared barrier, for ``test_transitions``."""

from __future__ import annotations

import os
from typing import Any


def move_after_barrier(
    barrier: Any, results: Any, env: dict[str, str], position_ids: list[int], to: str
) -> None:
    """For each position: read it (OPEN), wait for the other mover, move it to ``to``."""
    os.environ.update(env)
    import django

    django.setup()
    from trading.models import Position
    from trading.transitions import position_transition

    for position_id in position_ids:
        position = Position.objects.get(pk=position_id)
        barrier.wait(timeout=60)
        moved = position_transition(position, to, reason="race", actor=f"mover {to}")
        results.put((position_id, to, moved))
