"""Reading a finished run folder back: its config, scores, cells and val photos.

``bench report`` and ``bench colorize`` both start from a run folder that ``bench run``
wrote; this module is the one place that knows that layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.results import read_json, read_metrics
from bench.runner import slug

GRAY = "gray"
# Rows ``bench run`` writes for the val photos themselves (a reference such as their own
# colourfulness): shown in the table, never ranked or plotted as a model.
TRUTH = "ground-truth"
BASELINES = (GRAY, TRUTH)


class RunFolderError(ValueError):
    """A run folder that cannot be read; the message names the path and the fix."""


@dataclass
class Run:
    path: Path
    config: dict
    metrics: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def combinations(self) -> list[dict]:
        """``[{spec, name, tags}]`` in the order given to ``--losses``."""
        return self.config.get("combinations", [])

    @property
    def combination_names(self) -> list[str]:
        return [c["name"] for c in self.combinations]

    @property
    def options(self) -> dict:
        return self.config.get("options", {})

    @property
    def seeds(self) -> list[int]:
        return list(self.options.get("seeds", [0]))

    def cell(self, combination: str, seed: int) -> Path:
        return self.path / "cells" / slug(combination) / f"seed{seed}"

    def cell_record(self, combination: str, seed: int) -> dict | None:
        """The cell's metrics.json (status, scores, training seconds); None until it finished."""
        record = self.cell(combination, seed) / "metrics.json"
        return read_json(record) if record.is_file() else None


def load_run(path: str | Path) -> Run:
    path = Path(path)
    for needed in ("config.json", "metrics.csv"):
        if not (path / needed).is_file():
            raise RunFolderError(
                f"{path / needed} not found: {path} is not a finished `bench run` folder; "
                "pass the folder given to (or printed by) `bench run --out`"
            )
    return Run(path, read_json(path / "config.json"), read_metrics(path))


def newest_run(root: str | Path = "results") -> Path:
    """The most recently written run folder under ``root`` (by its metrics.csv)."""
    root = Path(root)
    runs = [p.parent for p in root.glob("*/metrics.csv")]
    if not runs:
        raise RunFolderError(
            f"no run found under {root}/ (no */metrics.csv); run `bench run` first or pass RUN_DIR"
        )
    return max(runs, key=lambda p: (p / "metrics.csv").stat().st_mtime)


def resolve_combination(run: Run, loss: str) -> str:
    """A combination's name from its name or its ``--losses`` spec (``perceptual`` finds
    ``perceptual[random-vgg]``)."""
    for c in run.combinations:
        if loss in (c["name"], c["spec"]):
            return c["name"]
    known = ", ".join(c["name"] for c in run.combinations)
    raise RunFolderError(f"--loss {loss!r} is not a combination of {run.path}; choose one of: {known}")


def generator_path(run: Run, combination: str, seed: int) -> Path:
    if seed not in run.seeds:
        raise RunFolderError(
            f"--seed {seed} was not trained in {run.path}; choose one of: {', '.join(map(str, run.seeds))}"
        )
    path = run.cell(combination, seed) / "generator.pt"
    if not path.is_file():
        why = (run.cell_record(combination, seed) or {}).get("status", "unfinished")
        raise RunFolderError(
            f"{path} not found ({combination} seed {seed} is {why}); pick another --loss/--seed, "
            "or finish the run by rerunning `bench run` with the same --out"
        )
    return path


def run_sources(run: Run):
    """The run's photo sources, located from config.json as ``bench run`` located them."""
    from colorbench_datasets import resolve_sources

    o = run.options
    return resolve_sources(
        o.get("data"), o.get("val_data"), o.get("dataset"), size=int(o["size"]), data_root=o.get("data_root"),
    )


def val_sources(run: Run):
    """The run's val photos as ``(name, opener)`` items; the openers give the original,
    full-resolution photos."""
    return run_sources(run).val


def load_val_split(run: Run):
    """The run's val split exactly as it was scored (same size, resize mode, crop and
    skips); a named dataset's cached split is reused, not rebuilt."""
    from colorbench_datasets.tensors import build_split

    sources = run_sources(run)
    size, workers = int(run.options["size"]), int(run.options.get("workers", 2))
    if sources.cache is not None:
        from colorbench_datasets.cache import build_cache

        split, _ = build_cache(sources.val, size, False, sources.cache, sources.resize, workers)
    else:
        split, _ = build_split(sources.val, size, False, workers, None, sources.resize)
    return split
