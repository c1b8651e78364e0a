"""How a run stops without losing work: a stop signal (Ctrl-C's SIGINT, SIGTERM from `kill`,
systemd or a container stop, SIGHUP from a closed terminal, and in a SLURM job the USR2
warning before its time limit) asks training to stop at the next step boundary, after
saving; rerunning the same command resumes."""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

log = logging.getLogger("colorbench")


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that save and stop. In a SLURM job, SIGTERM and SIGHUP stay submitit's
    (it ignores the SIGTERM that comes with a preemption and acts on USR2, requeueing)."""
    if os.environ.get("SLURM_JOB_ID"):
        return (signal.SIGINT, signal.SIGUSR2)
    return (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def signal_words(signum: int | None) -> str:
    if signum is None:
        return "a stop request"
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class RunInterrupted(Exception):
    """A stop signal: the current cell's state is saved; rerunning the same command resumes.
    ``signum``: the signal that asked for it (None: unknown)."""

    def __init__(self, out: Path, signum: int | None = None, note: str = ""):
        self.out, self.signum, self.note = out, signum, note
        super().__init__(f"stopped by {signal_words(signum)}; finished cells and the current cell's checkpoint "
                         f"are in {out}")


class StopOnSignals:
    """The first stop signal asks training to stop at the next step boundary (after saving);
    the same signal again aborts at once (KeyboardInterrupt)."""

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict = {}

    def __call__(self) -> bool:
        return self.requested is not None

    def _handle(self, signum, frame):
        if self.requested is not None:
            if signum == self.requested:  # the same signal again: abort now
                raise KeyboardInterrupt
            return  # another one (the terminal's Ctrl-C, then the parent's SIGTERM): already stopping
        self.requested = signum
        log.warning("\n%s: saving and stopping after this step (send it again to abort now).", signal_words(signum))

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in stop_signals():
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
