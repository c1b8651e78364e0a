"""How a run stops without losing work: a stop signal (Ctrl-C's SIGINT, SIGTERM from `kill`,
systemd or a container stop, SIGHUP from a closed terminal, and in a SLURM job the USR2
warning before its time limit) asks training to stop at the next step boundary, after
saving; rerunning the same command resumes. Where there is no step to finish (a run being
prepared: photos loading, gray being scored; the wait for the gallery's images at the end),
the signal stops it at once (``StopAtOnce``), leaving --out as a rerun needs it
(``stoppable_preparation``), and the same resume line is printed."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

from bench.rundir.layout import RunFolder
from bench.run.reuse import discard_run

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


class StopNow(KeyboardInterrupt):
    """A stop signal where there is no step boundary to wait for (a run being prepared: its
    photos loading, gray being scored), raised at once where the main thread is. A
    KeyboardInterrupt, so that no ``except Exception`` on the way (a photo decoder's) takes it
    for that photo's error."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class StopAtOnce(StopOnSignals):
    """``with StopAtOnce():`` the first stop signal raises ``StopNow`` in the main thread; the
    same signal again, while that unwinds, aborts (KeyboardInterrupt); another is ignored.
    A ``StopOnSignals`` inside it (training) takes the signals over until it ends."""

    def _handle(self, signum, frame):
        if self.requested is None:
            self.requested = signum
            raise StopNow(signum)
        if signum == self.requested:
            raise KeyboardInterrupt


@contextlib.contextmanager
def stoppable(out: str | Path, note: str = ""):
    """``with stoppable(out, note):`` a stop signal ends the block at once (where no step
    boundary is waited for; a ``StopOnSignals`` inside takes the signals over while it lasts)
    with ``RunInterrupted(out, signal, note)``."""
    try:
        with StopAtOnce():
            yield
    except StopNow as stop:
        raise RunInterrupted(Path(out), stop.signum, note) from None


def _config_stamp(folder: RunFolder) -> tuple | None:
    try:
        st = folder.config.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@contextlib.contextmanager
def stoppable_preparation(out: str | Path, overwrite: bool):
    """``with stoppable_preparation(cfg.out, overwrite):`` around everything a run does before
    its first cell trains (options, photos, weights, gray's scores, config.json). A stop
    signal ends it at once (``StopNow``), and it leaves --out as a rerun needs it:

    * a new run (nothing in --out yet, or a run --overwrite has already discarded): every
      file it wrote is removed, and the folder if it made it: the rerun starts it afresh;
    * an earlier run resumed or trained further: its files are kept (each written whole, the
      cells reopened to train further hold their checkpoints): the rerun carries on;
    * --overwrite stopped before the discard: the earlier run is untouched.

    Then ``RunInterrupted`` says so, and the CLI prints the command that resumes."""
    folder = RunFolder(out)
    existed, before = folder.path.exists(), _config_stamp(folder)
    try:
        with StopAtOnce():
            yield
    except StopNow as stop:
        now = _config_stamp(folder)
        if before is not None and now == before:  # the earlier run's config.json, as it was
            note = ("stopped before training, while preparing; the earlier run in it is untouched: add --overwrite "
                    "to discard it" if overwrite else "stopped while preparing, before training; what it had is kept")
        elif before is not None and not overwrite:  # a resumed run's preparation rewrote its config.json
            note = "stopped while preparing, before training; what it had is kept"
        else:
            removed = discard_run(folder.path) if folder.path.is_dir() else []
            if not existed:
                with contextlib.suppress(OSError):
                    folder.path.rmdir()
            note = ("stopped while preparing, before training: the files it had written are removed" if removed
                    else "stopped while preparing, before anything was written")
        log.debug("preparation of %s stopped by %s", folder.path, signal_words(stop.signum))
        raise RunInterrupted(folder.path, stop.signum, note) from None
