"""How a run stops without losing work: a signal asks training to stop at the next step
boundary, after saving; rerunning the same command resumes."""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

log = logging.getLogger("colorbench")


class RunInterrupted(Exception):
    """Ctrl-C: the current cell's state is saved; rerunning the same command resumes."""

    def __init__(self, out: Path):
        self.out = out
        super().__init__(f"interrupted; finished cells and the current cell's checkpoint are in {out}")


class StopOnSigint:
    """First Ctrl-C asks training to stop at the next step boundary (after saving);
    a second one aborts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("\nCtrl-C: saving and stopping after this step (press again to abort now).")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
