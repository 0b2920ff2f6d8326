"""A trade cycle run in a separate (spawned) process, released by a shared barrier."""

from __future__ import annotations

import os
from typing import Any


def run_cycle_after_barrier(barrier: Any, results: Any, env: dict[str, str], symbol: str) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from signals.cycles import trade_cycle_run
    from signals.types import Decision
    from trading.models import Symbol

    symbol_id = Symbol.objects.get(name=symbol).pk
    barrier.wait(timeout=60)
    outcome = trade_cycle_run(symbol_id=symbol_id, signal=Decision(action="LONG", reason="race"))
    results.put((outcome.status, outcome.reason))


def run_open_after_barrier(
    barrier: Any, results: Any, env: dict[str, str], symbol: str, max_open: int
) -> None:
    """Set ``max_open_positions``, wait at the barrier, then run one LONG cycle of ``symbol``."""
    os.environ.update(env)
    import django

    django.setup()
    from risk.models import RiskProfile
    from signals.cycles import trade_cycle_run
    from signals.types import Decision
    from trading.models import Symbol

    RiskProfile.objects.update(max_open_positions=max_open)
    symbol_id = Symbol.objects.get(name=symbol).pk
    barrier.wait(timeout=60)
    outcome = trade_cycle_run(symbol_id=symbol_id, signal=Decision(action="LONG", reason="race"))
    results.put((symbol, outcome.status, outcome.reason))
