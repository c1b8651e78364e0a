"""Watching a cell train: its val scores along training (``curve.csv``), where it stands
(``progress.json``, read by ``bench status``) and TensorBoard's event files, all written by
``CellMonitor``, the training loop's ``Monitor`` for a run's cells."""
from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from colorbench_datasets import model_to_rgb
from torchvision.utils import make_grid

from bench.config.options import WatchSettings
from bench.escape import terminal
from bench.rundir.layout import CellFolder
from bench.rundir.write import write_csv, write_json
from bench.score.scorer import Scorer, predict_ab
from bench.train.loop import Monitor, TrainState

try:  # the optional extra: pip install -e '.[tensorboard]'
    from torch.utils.tensorboard import SummaryWriter
except ImportError:
    SummaryWriter = None

log = logging.getLogger("colorbench")

CURVE_COLUMNS = ["step", "metric", "value"]


TENSORBOARD_MISSING = ("TensorBoard logging is off: the tensorboard package is not installed "
                       "(pip install -e '.[tensorboard]', or pip install tensorboard; --no-tensorboard silences this)")


def tensorboard_available() -> bool:
    return SummaryWriter is not None


# Steps after which a cell's pace is known: past the first steps' allocation and kernel choice.
PACE_STEPS = 20


# Val photos in TensorBoard's image grid: input | prediction | truth for each.
GRID_PHOTOS = 4


def grid_indices(n: int, count: int = GRID_PHOTOS) -> list[int]:
    """Fixed val photos, spread over the split, the same at every evaluation."""
    return list(dict.fromkeys(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist())) if n else []


def write_curve(path: Path, curve: list[dict]) -> None:
    write_csv(path, pd.DataFrame(curve, columns=CURVE_COLUMNS))


class CellMonitor(Monitor):
    """One cell's monitor: scores G on the val split every ``watch.interval(total)`` steps
    (``Scorer.curve_scores``), rewrites curve.csv and progress.json, and logs to TensorBoard
    under ``tensorboard`` (a folder, or None for none).

    A resumed cell's event files are purged of every step after the one it resumed at
    (``purge_step``): what a killed process logged after its last checkpoint is replaced by
    the rerun's, never doubled. A cell starting from step 0 starts a fresh folder."""

    def __init__(self, cell: CellFolder, scorer: Scorer, watch: WatchSettings, tensorboard: Path | None,
                 on_pace: Callable[[float, int], None] | None = None):
        self.cell, self.scorer, self.watch, self.tensorboard = cell, scorer, watch, tensorboard
        self.on_pace = on_pace  # told once (steps per second, steps left) when the pace is known
        self.writer, self.total = None, 0
        self.started_at, self.started_step = time.perf_counter(), 0
        self.grid = grid_indices(len(scorer))

    def started(self, cell: TrainState, total: int) -> None:
        self.total, self.every = total, self.watch.interval(total)
        self.started_at, self.started_step = time.perf_counter(), cell.step
        if self.tensorboard is not None:
            if cell.step == 0 and self.tensorboard.is_dir():  # an earlier attempt that saved no checkpoint
                shutil.rmtree(self.tensorboard)
            self.tensorboard.mkdir(parents=True, exist_ok=True)
            try:
                self.writer = SummaryWriter(str(self.tensorboard), purge_step=cell.step + 1 if cell.step else None)
            except UnicodeError:  # TensorBoard writes UTF-8 paths only
                log.warning("TensorBoard logging is off for %s: its path is not valid UTF-8 (rename the run folder "
                            "to log it)", terminal(os.fsdecode(self.tensorboard)))
        self._progress(cell.step, cell.log[-1] if cell.log else {})

    def evaluate(self, G: torch.nn.Module, step: int) -> dict[str, float]:
        # A generator gone non-finite since the last log sync has diverged: the next sync says
        # so and ends the cell; its predictions have no score to record.
        if not all(bool(torch.isfinite(p).all()) for p in G.parameters()):
            return {}
        return self.scorer.curve_scores(G, self.watch.eval_set_metrics)

    def logged(self, cell: TrainState, rows: list[dict]) -> None:
        if self.writer is not None:
            names = [name for name, _, _ in cell.terms] + ["total"] + (["d_loss"] if cell.D is not None else [])
            for row in rows:  # TensorBoard's step: steps done, as the curve's
                for name in names:
                    self.writer.add_scalar(f"loss/{name}", row[name], row["step"] + 1)
            self.writer.flush()  # whatever is checkpointed is on disk too
        if rows:
            rate = self._progress(cell.step, rows[-1])
            if self.on_pace is not None and rate and cell.step - self.started_step >= PACE_STEPS:
                self.on_pace(rate, self.total - cell.step)
                self.on_pace = None

    def evaluated(self, curve: list[dict], step: int, values: dict[str, float], G: torch.nn.Module) -> None:
        write_curve(self.cell.curve, curve)
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"val/{name}", value, step)
        self.writer.add_image("val/input | prediction | truth", self.sample_grid(G), step)
        self.writer.flush()

    def sample_grid(self, G: torch.nn.Module) -> torch.Tensor:
        """The grid photos as rows of grayscale input | prediction | ground truth, (3, H, W) in [0, 1]."""
        idx = torch.as_tensor(self.grid)
        L = self.scorer.L[idx].float()
        ab = predict_ab(G, L).to(L.device)
        gray = model_to_rgb(L, torch.zeros_like(ab))
        pred = model_to_rgb(L, ab)
        truth = self.scorer.target_rgb[idx].to(L.device).float() / 255
        tiles = torch.stack([gray, pred, truth], 1).flatten(0, 1).clamp(0, 1).cpu()
        return make_grid(tiles, nrow=3, padding=2, pad_value=1.0)

    def _progress(self, step: int, last: dict) -> float | None:
        elapsed = time.perf_counter() - self.started_at
        done = step - self.started_step
        rate = done / elapsed if done and elapsed > 0 else None
        write_json(self.cell.progress, {
            "step": step, "total": self.total,
            "steps_per_second": round(rate, 3) if rate else None,
            "eta_seconds": round((self.total - step) / rate, 1) if rate else None,
            "losses": {k: v for k, v in last.items() if k not in ("step", "epoch", "seconds") and v == v},
            "updated": datetime.now().isoformat(timespec="seconds"),
        })
        return rate

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
