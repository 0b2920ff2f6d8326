"""Show a long command's steps as they happen: the services' log lines, echoed to its output.

The services already log each step they take (halted, cancelled, closed, verified); a command
that prints only its final report leaves the operator looking at a silent terminal meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from django.utils import timezone

STEP_LOGGERS = ("trading.emergency", "trading.services", "trading.switch")


class _EchoHandler(logging.Handler):
    def __init__(self, out: TextIO) -> None:
        super().__init__(level=logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.write(f"  {timezone.now():%H:%M:%S} {record.getMessage()}\n")
            self.out.flush()
        except Exception:  # a progress line must never break the command
            self.handleError(record)


@contextmanager
def progress_echo(out: TextIO, *, loggers: tuple[str, ...] = STEP_LOGGERS) -> Iterator[None]:
    """Within the block, write every INFO+ line of ``loggers`` to ``out`` at once."""
    handler = _EchoHandler(out)
    targets = [logging.getLogger(name) for name in loggers]
    for target in targets:
        target.addHandler(handler)
    try:
        yield
    finally:
        for target in targets:
            target.removeHandler(handler)
