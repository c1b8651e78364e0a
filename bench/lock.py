"""One writer per run folder.

Two ``bench run`` processes on one ``--out`` would overwrite each other's checkpoints and
cells and leave a config.json describing only one of them. While a process writes a run
folder it holds an exclusive ``flock`` on a lock file beside it (``results/.run-A.lock``
for ``results/run-A``: beside, so that a run refused before it starts leaves no folder
behind). The kernel drops the lock when the process ends, however it ends (kill -9
included), so a crash never leaves a stale lock. A second process is refused at once with
the holder's pid, host, start time and command, read from the lock file.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

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


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return (f"pid {info['pid']} on {info['host']}, since {info['started']}: "
                f"{' '.join(info.get('command', []))}").strip()
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


class RunLock:
    """``with RunLock(out):`` -- hold the run folder ``out`` for writing, or raise
    ``RunFolderBusy`` naming the process that holds it."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
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
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._cleanup_parents()
                raise RunFolderBusy(
                    f"--out {self.out} is being written by another `bench run` ({_holder(self.path)}); wait for it "
                    f"to finish or stop it, or use another --out. (Lock file: {self.path}; it is released "
                    "automatically when that process ends.)"
                ) from None
            # The previous holder unlinks the file as it releases it: if we locked a file
            # that is no longer at the path, someone else may lock the new one. Retry.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now().isoformat(timespec="seconds"), "command": ["bench", *sys.argv[1:]]}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self.fd = fd
        return self

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


def default_out() -> str:
    return str(Path("results") / datetime.now().strftime("run-%Y%m%d-%H%M%S"))


def holds_run_lock(run):
    """Decorate ``run_benchmark(cfg, ...)``: pin ``cfg.out`` (a timestamped folder when not
    given) and hold its lock for the whole call."""

    @functools.wraps(run)
    def locked(cfg, *args, **kwargs):
        if cfg.out is None:
            cfg = replace(cfg, out=default_out())
        if not isinstance(cfg.out, (str, os.PathLike)):
            return run(cfg, *args, **kwargs)  # validate() refuses it with its message
        with RunLock(cfg.out):
            return run(cfg, *args, **kwargs)

    return locked
