"""Every val image's score, kept in the run folder for paired statistics (``bench.score.stats``).

Layout (tidy gzip CSVs that ``pandas.read_csv`` reads as they are):

* ``cells/<combination>/seed<k>/per_image.csv.gz`` -- combination, seed, image, metric,
  value: each per-image metric of the cell for every val image, keyed by file name;
* ``per_image.csv.gz`` (run folder) -- the same for ``gray`` (seed-independent: empty seed)
  and for ``ground-truth``: each photo's own colourfulness (``cf``, what ``delta_cf``
  compares with) and its share of ``auc_rebal``'s pooled weight (``auc_rebal_weight``);
* ``set_replicates.csv.gz`` beside either, only when the Inception network was there:
  combination, seed, metric, replicate, value -- every set metric (FID and KID) recomputed on each of the
  first ``N_BOOT_SET`` photo resamples of ``bench.score.stats.photo_indices`` while the features
  were in memory (the 2048-d features themselves are not kept).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.rundir.layout import GRAY, PER_IMAGE, REPLICATES, TRUTH
from bench.rundir.read import read_tidy_csv
from bench.rundir.write import atomic_write_bytes
from bench.score import stats
from bench.score.metrics import METRICS, SET
from bench.score.scorer import Scorer, Scores

COLUMNS = ["combination", "seed", "image", "metric", "value"]


REPLICATE_COLUMNS = ["combination", "seed", "metric", "replicate", "value"]


def write_frame(path: Path, frame: pd.DataFrame) -> None:
    """A gzip CSV written atomically; gzip's timestamp is fixed so equal scores give equal bytes."""
    buf = io.BytesIO()
    # 9 significant digits: every per-image score is a float32, so nothing is lost
    frame.to_csv(buf, index=False, float_format="%.9g", compression={"method": "gzip", "mtime": 0})
    atomic_write_bytes(path, buf.getvalue())


def scores_frame(combination: str, seed, images: list[str], per_image: dict[str, np.ndarray]) -> pd.DataFrame:
    parts = [
        pd.DataFrame({"combination": combination, "seed": seed, "image": images, "metric": name, "value": values})
        for name, values in per_image.items()
    ]
    return pd.concat(parts, ignore_index=True)[COLUMNS]


# Above this many val photos the FID/KID replicates are skipped: each is an N x N SVD and
# kernel, 200 per cell. Measured on 2 CPU cores: ~0.07 s at 242 photos, ~1.2 s at 1000. The
# GPU limit is a bound, not a measurement yet: benchmarks/gpu_check.sh times 2,000 photos.
SET_RESAMPLE_LIMIT = {"cpu": 1000, "cuda": 5000}


def set_resamples(n_photos: int, device) -> int:
    """How many FID/KID replicates a cell gets: ``N_BOOT_SET``, or 0 where they would cost
    minutes per cell (a large val set)."""
    limit = SET_RESAMPLE_LIMIT.get(torch.device(device).type, SET_RESAMPLE_LIMIT["cpu"])
    if n_photos < 2 or n_photos > limit:
        return 0
    return stats.N_BOOT_SET


def replicates_frame(combination: str, seed, scorer: Scorer, scores: Scores, n_boot: int | None = None) -> pd.DataFrame:
    """Every set metric (FID and KID) on each photo resample (predictions and photos resampled
    alike), from the features in memory; empty without their network, with fewer than 2
    images, or where ``set_resamples`` says they cost too much.

    Approximate: a resample repeats photos, which biases FID and KID of each set upwards;
    the paired difference of two models on the same resample is much less affected."""
    n_boot = set_resamples(len(scorer), scorer.device) if n_boot is None else n_boot
    parts = []
    for name, metric in METRICS.items():
        pred, real = scores.features.get(metric.network), scorer.target_features.get(metric.network)
        if metric.kind != SET or pred is None or real is None or len(scorer) < 2 or n_boot < 1:
            continue

        def metric_of(idx, fn=metric.fn, pred=pred, real=real):
            i = torch.as_tensor(idx, device=pred.device)
            return fn(pred[i], real[i]).item()

        values = stats.set_replicates(metric_of, len(scorer), n_boot)
        parts.append(pd.DataFrame({
            "combination": combination, "seed": seed, "metric": name, "replicate": np.arange(len(values)), "value": values,
        }))
    if not parts:
        return pd.DataFrame(columns=REPLICATE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[REPLICATE_COLUMNS]


def write_cell_scores(cell: Path, combination: str, seed: int, scorer: Scorer, scores: Scores) -> None:
    """A trained cell's per-image scores (and FID/KID replicates when computable)."""
    write_frame(Path(cell) / PER_IMAGE, scores_frame(combination, seed, scorer.image_names, scores.per_image))
    replicates = replicates_frame(combination, seed, scorer, scores)
    if len(replicates):
        write_frame(Path(cell) / REPLICATES, replicates)


def write_baseline_scores(out: Path, scorer: Scorer, gray: Scores) -> None:
    """The run's seed-independent rows: gray's per-image scores and the photos' own values."""
    frame = pd.concat([
        scores_frame(GRAY, np.nan, scorer.image_names, gray.per_image),
        scores_frame(TRUTH, np.nan, scorer.image_names, scorer.ground_truth_per_image()),
    ], ignore_index=True)
    write_frame(Path(out) / PER_IMAGE, frame)
    replicates = replicates_frame(GRAY, np.nan, scorer, gray)
    if len(replicates):
        write_frame(Path(out) / REPLICATES, replicates)


@dataclass
class PerImage:
    """A run's per-image scores as written: ``frame`` (COLUMNS; gray's and the ground
    truth's seed is NaN), ``replicates`` (REPLICATE_COLUMNS), and ``missing``: for each
    cell without per-image scores, why (diverged, unfinished, or made by an earlier version)."""

    frame: pd.DataFrame
    replicates: pd.DataFrame
    missing: dict[tuple[str, int], str] = field(default_factory=dict)

    @property
    def images(self) -> list[str]:
        return list(dict.fromkeys(self.frame["image"]))


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    return read_tidy_csv(path)


def read_per_image(run) -> PerImage:
    """Everything ``bench run`` kept per image for ``run`` (a ``bench.rundir.read.Run``)."""
    frames = [_read(run.folder.per_image, COLUMNS)]
    replicates = [_read(run.folder.replicates, REPLICATE_COLUMNS)]
    missing = {}
    for name in run.external_names:  # outside colorizers (`bench score`): one folder, no seed
        folder = run.folder.external(name)
        if folder.per_image.is_file():
            frames.append(_read(folder.per_image, COLUMNS))
            replicates.append(_read(folder.replicates, REPLICATE_COLUMNS))
        else:
            missing[(name, None)] = "not scored"
    for combination in run.combination_names:
        for seed in run.seeds:
            cell = run.folder.cell(combination, seed)
            if cell.per_image.is_file():
                frames.append(_read(cell.per_image, COLUMNS))
                replicates.append(_read(cell.replicates, REPLICATE_COLUMNS))
                continue
            record = run.cell_record(combination, seed)
            if record is None:
                missing[(combination, seed)] = "not trained yet"
            elif record.get("status") != "ok":
                missing[(combination, seed)] = record.get("status", "not scored")
            else:
                missing[(combination, seed)] = "scored before Colorbench kept per-image scores"
    nonempty = [f for f in frames if len(f)]
    frame = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(columns=COLUMNS)
    reps = [r for r in replicates if len(r)]
    return PerImage(frame, pd.concat(reps, ignore_index=True) if reps else pd.DataFrame(columns=REPLICATE_COLUMNS), missing)
