"""The val photos of a finished run, found again from its config.json, for the figures that
show them."""
from __future__ import annotations

from colorbench_datasets import resolve_sources
from colorbench_datasets.cache import build_cache
from colorbench_datasets.tensors import build_split

from bench.rundir.read import Run


def run_sources(run: Run):
    """The run's photo sources, located from config.json as ``bench run`` located them."""
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
    sources = run_sources(run)
    size, workers = int(run.options["size"]), int(run.options.get("workers", 2))
    if sources.cache is not None:
        split, _ = build_cache(sources.val, size, False, sources.cache, sources.resize, workers)
    else:
        split, _ = build_split(sources.val, size, False, workers, None, sources.resize)
    return split
