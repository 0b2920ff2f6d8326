"""Keep the engine's state in a JSON file so a restart keeps balances, positions and orders.

Writes are atomic (temp file + rename) and batched: a mutating request marks the state dirty and
a background thread writes at most once per ``interval`` seconds, plus once on shutdown.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from paper.engine import Engine

logger = logging.getLogger(__name__)


class StateFileError(Exception):
    """The state file cannot be read back: the exchange refuses to start on it."""


class StateFile:
    """The engine's state on disk."""

    def __init__(self, path: Path, engine: Engine, *, interval: float = 1.0) -> None:
        self.path = path
        self.engine = engine
        self.interval = interval
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> bool:
        """Load the file into the engine if it exists; return whether it did."""
        if not self.path.exists():
            return False
        try:
            state = json.loads(self.path.read_text(), parse_constant=_no_constant)
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            self.engine.load_state(state)
        except (OSError, ValueError, KeyError, TypeError, ArithmeticError) as e:
            # Starting empty would silently forget positions; a half-loaded engine is worse.
            self.engine.reset()
            raise StateFileError(
                f"{self.path} is not a readable paper exchange state file"
                f" ({type(e).__name__}: {e}); move it away to start afresh"
            ) from e
        logger.info("restored paper exchange state from %s", self.path)
        return True

    def mark_dirty(self) -> None:
        self._dirty.set()

    def save(self) -> None:
        """Write the state now, atomically."""
        state = self.engine.to_state()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="paper-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.save()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._dirty.is_set():
                self._dirty.clear()
                try:
                    self.save()
                except OSError:
                    logger.exception("could not save paper exchange state to %s", self.path)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")
