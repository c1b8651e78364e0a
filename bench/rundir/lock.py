"""One writer per run folder, and one per cell.

Two ``bench run`` processes on one ``--out`` would overwrite each other's checkpoints and
cells and leave a config.json describing only one of them. While a process writes a run
folder it holds an exclusive ``flock`` on a lock file beside it (``results/.run-A.lock``
for ``results/run-A``: beside, so that a run refused before it starts leaves no folder
behind). The kernel drops the lock when the process ends, however it ends (kill -9
included), so a crash never leaves a stale lock. A second process is refused at once with
the holder's pid, host, start time and command, read from the lock file.

A cell (``cells/<combination>/seed<k>``) has its own lock, taken the same way by whichever
process trains it: the serial loop, a local worker, a SLURM array task or rank 0 of a
torchrun group. Jobs of one launch share the run folder and never its cells; ``bench status``
reads the holders to say which cell runs where. flock works across the nodes of a cluster
on NFSv4 and Lustre (emulated as POSIX locks), the usual homes of a shared run folder.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

log = logging.getLogger("colorbench")

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no lock, as before
    fcntl = None


class RunFolderBusy(ValueError):
    """The run folder cannot be taken: another process writes it (the message says who), or
    its lock file cannot be made there."""


def lock_path(out: Path) -> Path:
    # Resolved: `results/run`, its absolute path and a symlink to it are one folder, one lock.
    out = Path(os.path.realpath(out))
    return out.parent / f".{out.name}.lock"


def invoked_as() -> list[str]:
    """How this process's command was started, to say it again (a resume line, a lock's
    holder): ``bench``, or ``python -m bench`` with the interpreter that ran it."""
    if Path(sys.argv[0]).name != "__main__.py":
        return ["bench"]
    exe = sys.executable or "python3"
    for short in ("python3", "python"):  # the plain name when it is this interpreter
        found = shutil.which(short)
        if found and os.path.realpath(found) == os.path.realpath(exe):
            exe = short
            break
    return [exe, "-m", "bench"]


UNKNOWN_HOLDER = "a process that has not written its details yet"


def describe_holder(info: dict) -> str:
    """A lock holder's details (``holder``, or the lock file's JSON) in a refusal's words."""
    try:
        job = f", {info['job']}" if info.get("job") else ""
        return (f"pid {info['pid']} on {info['host']}{job}, since {info['started']}: "
                f"{' '.join(info.get('command', []))}").strip()
    except (KeyError, TypeError, AttributeError):
        return UNKNOWN_HOLDER


def _holder(path: Path) -> str:
    try:
        return describe_holder(json.loads(path.read_text()))
    except (OSError, ValueError):
        return UNKNOWN_HOLDER


def _task(path: Path) -> str:
    """What the holder of the lock file ``path`` does (``bench run``, ``bench score``…), in its
    command's words; a lock written before holders said so was a run's."""
    try:
        info = json.loads(path.read_text())
        task = info.get("task") if isinstance(info, dict) else None
    except (OSError, ValueError):
        task = None
    return task if isinstance(task, str) and task else "bench run"


def _flock_soon(fd: int, tries: int = 5) -> bool:
    """Take ``fd``'s exclusive flock, trying a few times over a quarter second: `bench status`
    (``holder``) holds a shared lock for microseconds while it looks, and a worker claiming
    the cell just then must not take the cell for busy."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < tries - 1:
                time.sleep(0.05)
    return False


class RunLock:
    """``with RunLock(out):`` -- hold the run folder ``out`` for writing, or raise
    ``RunFolderBusy`` naming the process that holds it."""

    def __init__(self, out: str | Path, job: str = "", task: str = "bench run", wait_for: tuple[str, ...] = (),
                 patience: float = 1800.0):
        self.out = Path(out)
        self.job = job  # e.g. "slurm job 1234_5": shown by `bench status` and in refusals
        # what the holder does, in the words of its command: refusals name it, and a short
        # task (``wait_for``: e.g. another `bench score`) is waited for rather than refused
        self.task, self.wait_for, self.patience = task, tuple(wait_for), patience
        self.path = lock_path(self.out)
        self.fd: int | None = None
        self.made: list[Path] = []  # parent folders this lock created, removed again if left empty

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        missing = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderBusy(f"--out {self.out}: cannot create its parent folder ({exc.strerror}); "
                                "choose an --out in a folder you can write") from None
        self.made = missing
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                self._cleanup_parents()
                raise RunFolderBusy(f"--out {self.out}: cannot create the lock file {self.path} ({exc.strerror}); "
                                    "choose an --out in a folder you can write") from None
            if not _flock_soon(fd) and not self._wait(fd):
                os.close(fd)
                self._cleanup_parents()
                raise RunFolderBusy(self.busy_message()) from None
            # The previous holder unlinks the file as it releases it: if we locked a file
            # that is no longer at the path, someone else may lock the new one. Retry.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "job": self.job, "task": self.task,
                "started": datetime.now().isoformat(timespec="seconds"), "command": [*invoked_as(), *sys.argv[1:]]}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self.fd = fd
        return self

    def _wait(self, fd: int) -> bool:
        """Wait (up to ``patience`` seconds) for a holder whose task is one of ``wait_for``:
        two `bench score --run` started together both get their turn. Whether the lock was taken."""
        if not self.wait_for:
            return False
        for _ in range(10):  # a holder that has just taken the lock writes its details at once
            try:
                if self.path.stat().st_size:
                    break
            except OSError:
                return _flock_soon(fd)  # released meanwhile: acquire's inode check sorts it out
            time.sleep(0.05)
        if _task(self.path) not in self.wait_for:
            return False
        log.warning("%s is being written by another `%s` (%s); waiting for it to finish", self.out, _task(self.path),
                    _holder(self.path))
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if _flock_soon(fd, tries=1):
                return True
            if _task(self.path) not in self.wait_for:
                return False  # another kind of holder took it meanwhile: refused, naming it
        return False

    def busy_message(self) -> str:
        task = _task(self.path)
        fix = ("; wait for it to finish or stop it" + (", or use another --out" if self.task == "bench run" else "")
               + ". (Lock file: " + str(self.path) + "; it is released automatically when that process ends.)")
        return f"{self.out} is being written by {'another' if task == self.task else 'a'} `{task}` ({_holder(self.path)}){fix}"

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before unlocking: see the inode check above
        finally:
            os.close(self.fd)  # closing drops the flock
            self.fd = None
        self._cleanup_parents()

    def _cleanup_parents(self) -> None:
        for folder in self.made:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (the run wrote into it) or not ours to remove
        self.made = []

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class CellLock(RunLock):
    """``with CellLock(cell_folder, job):`` -- train one cell, or raise ``RunFolderBusy``
    naming the process (and job) that trains it."""

    def busy_message(self) -> str:
        return (f"cell {self.out} is being trained by another process ({_holder(self.path)}); `bench status` "
                "shows where. Wait for it, or stop that job.")


def holder(folder: str | Path) -> dict | None:
    """Who holds ``folder``'s lock (pid, host, job, started, command), or None when nobody
    does. Only looks: never creates a lock file, never blocks."""
    path = lock_path(Path(folder))
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # we could take it: its holder is gone
    except BlockingIOError:
        try:
            info = json.loads(os.read(fd, 65536) or b"{}")
        except ValueError:
            info = {}
        return info if isinstance(info, dict) else {}
    finally:
        os.close(fd)


@contextlib.contextmanager
def taking_turns(path: Path):
    """Hold an exclusive lock on the file ``path`` for a block, waiting for it if another
    process holds it (a short critical section: rewriting metrics.csv)."""
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield

