"""The one guard of every command that makes a run folder (``bench run --out``, ``bench score
--truth … --out``): what an existing folder may be, before anything is written into it.

A folder is one of: new (absent or empty, or holding only the user's own files under other
names than a run's); a run folder (its config.json readable as a run's), left to the caller
to resume, extend or refuse; a folder this kind of command left unfinished (config.json says
who made it and that it never finished), which a rerun replaces; or a folder holding files
by a run's names that no run wrote (the user's own metrics.csv, a damaged config.json), which
is never written over. Every refusal names the folder, what it holds and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.rundir.layout import METRICS, RUN_FILES, RUN_TREES, RunFolder
from bench.rundir.read import RecordError, read_config

# What made a run folder, as config.json's ``made_by`` records it (a run's config written
# before the key existed was a `bench run`'s).
RUN_MAKER = "bench run"
SCORE_MAKER = "bench score"


class OutFolderError(RecordError):
    """An --out that the command may not write into; the message names the fix."""


@dataclass(frozen=True)
class OutFolder:
    """What an existing --out holds: ``config`` (its run config.json, None if none),
    ``maker`` (the command that made it) and ``finished``."""

    path: Path
    config: dict | None = None

    @property
    def is_run(self) -> bool:
        return self.config is not None

    @property
    def maker(self) -> str | None:
        return None if self.config is None else self.config.get("made_by", RUN_MAKER)

    @property
    def finished(self) -> bool:
        return self.config is not None and bool(self.config.get("finished")) and RunFolder(self.path).metrics.is_file()


def ours(out: Path) -> list[str]:
    """The names in ``out`` that a run writes (files and folders)."""
    return [name for name in (*RUN_FILES, *RUN_TREES) if (Path(out) / name).exists()]


def inspect_out(out, writer: str, overwrite: bool = False) -> OutFolder:
    """What ``out`` holds, for ``writer`` (``bench run`` or ``bench score``) to write a run
    folder there; raises ``OutFolderError`` for a folder that holds a run's file names but is
    not a run folder (or, with ``overwrite``, any of them: they would be deleted)."""
    out = Path(out)
    folder = RunFolder(out)
    if not out.is_dir():
        return OutFolder(out)
    if folder.config.is_file():
        try:
            return OutFolder(out, read_config(folder.config))
        except RecordError:
            if writer == RUN_MAKER and not overwrite:
                return OutFolder(out)  # the rerun's option check names the damaged config.json and its fix
    if writer == RUN_MAKER and folder.cells_dir.is_dir():
        return OutFolder(out)  # cells whose config.json is gone or damaged: the kept cells are checked one by one
    found = ours(out)
    if found and (overwrite or METRICS in found or writer != RUN_MAKER):
        what = "them" if overwrite else METRICS if writer == RUN_MAKER else ", ".join(found)
        raise OutFolderError(
            f"--out {out} holds {', '.join(found)} but is not a `bench run` folder (no cells/, no run config.json); "
            f"a {'run' if writer == RUN_MAKER else '`bench score`'} would write over {what}. Choose another --out."
        )
    return OutFolder(out)


def check_new_score_folder(out) -> OutFolder:
    """``bench score --truth … --out``: a new folder, or one an earlier `bench score` left
    unfinished (replaced); a run folder is refused with the command that adds rows to it."""
    state = inspect_out(out, SCORE_MAKER)
    if not state.is_run or (state.maker == SCORE_MAKER and not state.finished):
        return state
    if state.finished:
        raise OutFolderError(f"{out} already holds a finished run: add rows to it with `bench score --run {out} "
                             "NAME=FOLDER`, or choose a new --out")
    raise OutFolderError(f"{out} holds an unfinished `bench run` (rerun it with the same --out to finish it, then "
                         f"`bench score --run {out} NAME=FOLDER` adds rows to it); choose a new --out")
