"""Writing results: atomic files, and the tidy ``metrics.csv``."""
from __future__ import annotations

import contextlib
import contextvars
import io
import json
import math
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch

from bench.rundir.layout import METRICS_COLUMNS

# Inside ``all_or_nothing``: the (temp file, final path) pairs written so far, renamed
# into place together when the block ends.
_STAGED: contextvars.ContextVar[list | None] = contextvars.ContextVar("staged_writes", default=None)


@contextlib.contextmanager
def all_or_nothing():
    """Every file written in the block (through ``atomic_write_bytes``) stays a temp file
    beside its final name until the block ends, then all are renamed into place; if the
    block fails (a full disk half-way through a report), none is, and the old files stay
    as they were. Renames need no space, so the last step cannot run out of it."""
    pending: list[tuple[str, Path]] = []
    token = _STAGED.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    else:
        for tmp, path in pending:
            os.replace(tmp, path)
    finally:
        _STAGED.reset(token)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so a crash never leaves a
    half-written file under the final name. A failure names the file and the fix."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _named(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file owner-only; results are meant to be shared like any file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        staged = _STAGED.get()
        if staged is not None:
            staged.append((tmp, path))
        else:
            os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _named(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` saying which file could not be written and what to do (a bare ``[Errno 28]``
    names neither)."""
    fix = {28: "free space on that disk, or write elsewhere (--out)",
           30: "the disk is read-only: write elsewhere (--out)",
           13: "no permission there: fix it, or write elsewhere (--out)"}.get(exc.errno, "write elsewhere (--out)")
    return OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}; {fix}")


def atomic_write_text(path: Path, text: str) -> None:
    # Always valid UTF-8: bytes of a path that is not (a Latin-1 folder name, which Python
    # holds as surrogates) are written as \xe9 escapes instead of failing the whole file.
    try:
        data = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode()
    except UnicodeEncodeError:  # a lone surrogate that no file name produced
        data = text.encode("utf-8", "backslashreplace")
    atomic_write_bytes(path, data)


def _nan_to_null(obj):
    """NaN and infinities as ``null``: bare ``NaN`` is not JSON (jq and browsers refuse it)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_null(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    text = json.dumps(_nan_to_null(obj), indent=2, sort_keys=False, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def atomic_torch_save(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def metrics_frame(rows: list[dict]) -> pd.DataFrame:
    """Tidy rows (combination, seed, metric, value, note) -> a DataFrame in that column order."""
    frame = pd.DataFrame(rows, columns=METRICS_COLUMNS)
    frame["note"] = frame["note"].fillna("")
    return frame
