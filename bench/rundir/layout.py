"""The run folder's layout: the one place that knows which file is where.

    <run>/config.json          every resolved option, versions, device, data manifest
    <run>/metrics.csv          tidy table, assembled from the cells' own records
    <run>/per_image.csv.gz     gray's and the photos' own per-image scores
    <run>/cells/<slug>/seed<k>/
        metrics.json  generator.pt  checkpoint.pt  train_log.csv  per_image.csv.gz  set_replicates.csv.gz
        curve.csv      the val scores along training (step, metric, value)
        state.pt       a finished cell's last training state: a larger --steps continues from it
        progress.json  where a training cell stands (rewritten at each log sync; `bench status`)
        gallery/       the cell's val predictions as small images, for gallery.html
    <run>/gallery/             the val photos' grayscale inputs and truths, for gallery.html
    <run>/external/<name>/     an outside colorizer's scores (`bench score`): metrics.json, per_image.csv.gz,
                               set_replicates.csv.gz, gallery/ -- seed-independent, like gray
    <run>/tensorboard/<slug>/seed<k>/   TensorBoard event files (with the tensorboard package)
    <run>/launch.json          local/slurm: the jobs submitted, with their cells and logs
    <run>/jobs/                submitit's job files and logs (local/slurm)
    <run>/cells/<slug>/seed<k>/failure.json   a job's error in that cell, until it is retried
    <run>/report.md  summary.csv  table.tex  pairwise.csv  fig_*.png  gallery.html     written by `bench report`

``bench run`` writes it, ``bench report``, ``bench compare`` and ``bench colorize`` read it;
this module imports nothing from training, so the reading side never loads it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bench.rundir.lock import CellLock, RunLock

# Rows of metrics.csv that are not trained models: ``gray`` (ab = 0, the input itself, the
# floor every model is read against) and ``ground-truth`` (the val photos themselves, e.g.
# their own colourfulness): shown in the table, never ranked or plotted as a model.
GRAY = "gray"
TRUTH = "ground-truth"
BASELINES = (GRAY, TRUTH)
CONFIG = "config.json"
METRICS = "metrics.csv"
METRICS_COLUMNS = ["combination", "seed", "metric", "value", "note"]
PER_IMAGE = "per_image.csv.gz"
REPLICATES = "set_replicates.csv.gz"
REPORT = "report.md"
SUMMARY = "summary.csv"
PAIRWISE = "pairwise.csv"
LATEX = "table.tex"
FIGURES = "fig_*.png"
LAUNCH = "launch.json"
JOBS = "jobs"
METRICS_LOCK = ".metrics.lock"
CELL_RECORD = "metrics.json"
FAILURE = "failure.json"
GENERATOR = "generator.pt"
CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train_log.csv"
CURVE = "curve.csv"
STATE = "state.pt"
PROGRESS = "progress.json"
GALLERY_DIR = "gallery"
GALLERY = "gallery.html"
TENSORBOARD = "tensorboard"
EXTERNAL = "external"


# Everything a run (and its report) writes, so --overwrite discards exactly these.
RUN_FILES = (CONFIG, METRICS, REPORT, SUMMARY, LATEX, PAIRWISE, PER_IMAGE, REPLICATES, LAUNCH, METRICS_LOCK, GALLERY)
CELL_FILES = (GENERATOR, CHECKPOINT, CELL_RECORD, TRAIN_LOG, PER_IMAGE, REPLICATES, FAILURE, CURVE, PROGRESS, STATE)
# ... and the folders a run fills with files of its own alone
RUN_TREES = (JOBS, GALLERY_DIR, TENSORBOARD, EXTERNAL)
CELL_TREES = (GALLERY_DIR,)


def is_within(path, folder, strict: bool = False) -> bool:
    """Whether ``path`` is inside ``folder`` (or is it, unless ``strict``), links resolved."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return folder in path.parents or (not strict and path == folder)


def slug(name: str) -> str:
    """A file-system-safe folder name for a combination (``100*l1+gan`` -> ``100xl1+gan``).
    Not one-to-one (``a*b`` and ``axb`` meet): the run's combinations are checked to keep
    distinct folders when they are planned (bench/config/validate.py). Never ``.``, ``..`` or
    hidden: a name is never a path of its own."""
    out = re.sub(r"[^A-Za-z0-9.+_-]", "_", name.replace("*", "x"))
    return "_" + out if out.startswith(".") or not out else out


# An outside colorizer's name that is its own folder name: lower case (a case-insensitive
# file system would merge ``DDColor`` and ``ddcolor``), no separator, never ``.``/``..``.
_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9+_.-]{0,79}")


def external_folder_name(name: str) -> str:
    """The folder of the outside colorizer ``name`` under ``external/``, one-to-one: a plain
    name is its own folder; any other gets a readable part and a digest of the whole name
    after ``~`` (which no plain name holds), so ``x y``, ``x_y`` and ``X_y`` keep three folders."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    readable = re.sub(r"[^A-Za-z0-9+_-]", "_", name)[:40].strip("_+-") or "colorizer"
    return f"{readable}~{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def recorded_name(record: Path) -> str | None:
    """The row name a scored folder's metrics.json says it holds (None: no readable record)."""
    try:
        name = json.loads(record.read_text(encoding="utf-8")).get("combination")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


@dataclass(frozen=True)
class _ScoredFolder:
    """A folder with per-image scores: a cell's, or the run's own (gray and the photos)."""

    path: Path

    @property
    def per_image(self) -> Path:
        return self.path / PER_IMAGE

    @property
    def replicates(self) -> Path:
        return self.path / REPLICATES

    @property
    def gallery(self) -> Path:
        """Its images for gallery.html (a cell's predictions; the run's: gray's and the truth's)."""
        return self.path / GALLERY_DIR


@dataclass(frozen=True)
class CellFolder(_ScoredFolder):
    """One (combination, seed) cell's files."""

    @property
    def record(self) -> Path:
        return self.path / CELL_RECORD

    @property
    def generator(self) -> Path:
        return self.path / GENERATOR

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def failure(self) -> Path:
        return self.path / FAILURE

    @property
    def curve(self) -> Path:
        return self.path / CURVE

    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def run(self) -> Path:
        """The run folder it belongs to (``<run>/cells/<slug>/seed<k>``)."""
        return self.path.parents[2]

    @property
    def progress(self) -> Path:
        return self.path / PROGRESS

    def is_done(self) -> bool:
        return self.record.is_file()

    def lock(self, job: str = ""):
        """The lock of the one process that trains this cell (``with cell.lock(job): ...``)."""
        return CellLock(self.path, job)


@dataclass(frozen=True)
class ExternalFolder(_ScoredFolder):
    """An outside colorizer's scores (``bench score``): no seed, no training."""

    @property
    def record(self) -> Path:
        return self.path / CELL_RECORD


@dataclass(frozen=True)
class RunFolder(_ScoredFolder):
    """A run folder's paths; ``Path``-like enough to print as its path."""

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def pairwise(self) -> Path:
        return self.path / PAIRWISE

    @property
    def latex(self) -> Path:
        return self.path / LATEX

    @property
    def launch(self) -> Path:
        return self.path / LAUNCH

    @property
    def jobs_dir(self) -> Path:
        return self.path / JOBS

    @property
    def metrics_lock(self) -> Path:
        return self.path / METRICS_LOCK

    @property
    def cells_dir(self) -> Path:
        return self.path / "cells"

    def cell(self, combination: str, seed: int) -> CellFolder:
        return CellFolder(self.cells_dir / slug(combination) / f"seed{seed}")

    def external(self, name: str) -> ExternalFolder:
        """The outside colorizer ``name``'s folder; one scored before folder names were
        one-to-one (``slug``) is found there when its record names it."""
        folder = ExternalFolder(self.path / EXTERNAL / external_folder_name(name))
        legacy = ExternalFolder(self.path / EXTERNAL / slug(name))
        if not folder.path.exists() and legacy != folder and recorded_name(legacy.record) == name:
            return legacy
        return folder

    def tensorboard(self, combination: str, seed: int) -> Path:
        """A cell's TensorBoard event folder: one ``--logdir <run>/tensorboard`` shows them all."""
        return self.path / TENSORBOARD / slug(combination) / f"seed{seed}"

    @property
    def gallery_page(self) -> Path:
        return self.path / GALLERY

    def cell_dirs(self) -> list[Path]:
        """Every cell folder present, finished or not."""
        return sorted(self.cells_dir.glob("*/seed*")) if self.cells_dir.is_dir() else []

    def figures(self) -> list[Path]:
        return sorted(self.path.glob(FIGURES))

    def lock(self, task: str = "bench run", wait_for: tuple[str, ...] = ()):
        """The exclusive lock a writer holds on this folder (``with folder.lock(): ...``);
        ``task``: what the writer does, ``wait_for``: holders it waits for (bench/rundir/lock.py)."""
        return RunLock(self.path, task=task, wait_for=wait_for)
