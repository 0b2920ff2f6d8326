"""Run the processes of a Procfile for local use, and stop them in order.

Like honcho's ``start``, with two differences that matter for a trading bot:

- each process runs in its own session, so the terminal's Ctrl-C reaches this runner only, not
  a worker's pool children in the middle of a task;
- on Ctrl-C (or SIGTERM) the processes stop one at a time, in the reverse order of the
  Procfile, each given time to finish its work: the worker finishes its tasks while the
  exchange it talks to is still up, then the web server, then the paper exchange saves its
  account.

If one process exits by itself, the others are stopped the same way. The exit code is 0 after
a stop asked for, otherwise that of the first process that exited.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# A Celery worker's warm shutdown waits for running tasks; a trade cycle may take this long.
STOP_TIMEOUT_SECONDS = 60.0
LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


@dataclass
class Process:
    name: str
    command: str
    popen: subprocess.Popen[bytes] | None = None
    printer: threading.Thread | None = field(default=None, repr=False)


def parse_procfile(text: str) -> list[Process]:
    """The processes of a Procfile, in file order (comments and blank lines skipped)."""
    processes = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        if match is None:
            raise ValueError(f"not a Procfile line: {raw!r}")
        processes.append(Process(match.group(1), match.group(2)))
    return processes


class Runner:
    def __init__(self, processes: list[Process], *, stop_timeout: float) -> None:
        self.processes = processes
        self.stop_timeout = stop_timeout
        self.width = max(len(p.name) for p in processes)
        self.stopping = threading.Event()
        self.output_lock = threading.Lock()

    def say(self, name: str, text: str) -> None:
        with self.output_lock:
            stamp = datetime.now().strftime("%H:%M:%S")  # noqa: DTZ005 - local console time
            sys.stdout.write(f"{stamp} {name.ljust(self.width)} | {text}\n")
            sys.stdout.flush()

    def start(self) -> None:
        for process in self.processes:
            process.popen = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {process.command}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # the terminal's Ctrl-C is ours to pass on, in order
            )
            self.say("system", f"{process.name} started (pid {process.popen.pid})")
            process.printer = threading.Thread(target=self._print, args=(process,), daemon=True)
            process.printer.start()

    def _print(self, process: Process) -> None:
        assert process.popen is not None and process.popen.stdout is not None
        for raw in iter(process.popen.stdout.readline, b""):
            self.say(process.name, raw.decode(errors="replace").rstrip("\n"))

    def wait(self) -> int:
        """Until a stop is asked for or a process exits; then stop all. The exit code."""
        first_exit: int | None = None
        while not self.stopping.is_set():
            for process in self.processes:
                assert process.popen is not None
                code = process.popen.poll()
                if code is not None:
                    self.say("system", f"{process.name} exited with code {code}")
                    first_exit = code or 1
                    self.stopping.set()
                    break
            else:
                self.stopping.wait(0.2)
        self.stop_all()
        return 0 if first_exit is None else first_exit

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            self._stop(process)

    def _stop(self, process: Process) -> None:
        popen = process.popen
        if popen is None or popen.poll() is not None:
            return
        self.say("system", f"stopping {process.name}")
        self._signal(popen, signal.SIGTERM)
        try:
            popen.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.say("system", f"{process.name} still running after {self.stop_timeout:.0f} s")
            self._signal(popen, signal.SIGKILL)
            popen.wait()
        if process.printer is not None:
            process.printer.join(timeout=5)
        self.say("system", f"{process.name} stopped (code {popen.returncode})")

    @staticmethod
    def _signal(popen: subprocess.Popen[bytes], signum: int) -> None:
        # The main process only: a Celery worker stops its own pool children when told to.
        try:
            os.kill(popen.pid, signum)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("procfile", type=Path)
    parser.add_argument("--stop-timeout", type=float, default=STOP_TIMEOUT_SECONDS)
    args = parser.parse_args(argv)
    runner = Runner(parse_procfile(args.procfile.read_text()), stop_timeout=args.stop_timeout)

    def ask_stop(signum: int, frame: object) -> None:
        if not runner.stopping.is_set():
            runner.say("system", f"{signal.Signals(signum).name} received: stopping in order")
        runner.stopping.set()

    signal.signal(signal.SIGINT, ask_stop)
    signal.signal(signal.SIGTERM, ask_stop)
    runner.start()
    code = runner.wait()
    runner.say("system", "all stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
