"""Commands run as bounded steps of a longer check: each logged to its own file and stopped, with its
process group, when its share of the time is spent; a failure says what and shows the log's tail.

Used by the GPU check (:mod:`muselens.benchmarks.gpu_check`), whose parts are these steps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _say(message: str) -> None:
    print(f"gpu-check: {message}", file=sys.stderr, flush=True)


class PartFailed(Exception):
    """A part that ran and did not do its job; the message is the JSON's reason, ``details`` go
    into its record beside it."""

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.details = details or {}


class StepTimedOut(PartFailed):
    """A command stopped at its share of the budget."""


class PartSkipped(Exception):
    """A part that could not run here; the message is the JSON's reason."""


def muselens_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "muselens", *args]


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group (its server too), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(log: Path, lines: int = 4) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    text = text[1:] if text and text[0].startswith("$ ") else text  # the command line run_logged wrote first
    return " | ".join(line.strip() for line in text[-lines:])


def run_logged(argv: Sequence[str], log: Path, timeout: float) -> int | None:
    """Run ``argv`` in its own process group with stdout and stderr to ``log``; its exit status,
    or None when it ran past ``timeout`` seconds and was stopped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            return None
        except BaseException:
            _stop_group(proc)
            raise


def run_step(argv: Sequence[str], log: Path, timeout: float, what: str) -> None:
    """:func:`run_logged`, raising :class:`PartFailed` (with the log's last lines) unless it exits 0."""
    shown = argv[2:] if list(argv[:2]) == [sys.executable, "-m"] else argv
    _say(f"{what}: {' '.join(shown)} (at most {timeout:.0f} s; log {log})")
    code = run_logged(argv, log, timeout)
    if code is None:
        raise StepTimedOut(f"{what} was stopped after its {timeout:.0f} s share of the budget; log ends: "
                           f"{log_tail(log)}")
    if code != 0:
        raise PartFailed(f"{what} exited with status {code}; log ends: {log_tail(log)}")
