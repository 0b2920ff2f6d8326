"""Run a pass now and then every N seconds, until Ctrl-C: the loop of the guard and sentinel
commands (in production, Celery Beat schedules the same passes instead)."""

from __future__ import annotations

import time
from collections.abc import Callable


def run_every(
    *,
    seconds: float,
    once: bool,
    run: Callable[[], str],
    write: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Call ``run`` (which returns a one-line summary) once, or every ``seconds`` until Ctrl-C.

    Passes start on a fixed cadence: a slow pass shortens the next wait instead of shifting
    every later pass, and a pass longer than the interval makes the next start at once.
    """
    try:
        while True:
            started = clock()
            write(run())
            if once:
                return
            sleep(max(0.0, seconds - (clock() - started)))
    except KeyboardInterrupt:
        write("Stopped.")
