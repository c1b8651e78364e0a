"""The val photos of a finished run, found again from its config.json, for the figures that
show them."""
from __future__ import annotations

from colorbench_datasets import Sources, photo_items, resolve_sources
from colorbench_datasets.cache import build_cache
from colorbench_datasets.manifest import describe_split_change, file_list, split_print
from colorbench_datasets.tensors import build_split, val_mode

from bench.rundir.read import Run
from bench.score.protocol import scoring_protocol_of


def run_sources(run: Run):
    """The run's photo sources, located from config.json as ``bench run`` located them."""
    o, scored = run.options, run.config.get("scored_truth")
    if isinstance(scored, dict):  # a `bench score --truth` folder: its photos are the val split
        return Sources([], photo_items(scored["folder"]), str(scored["folder"]), resize=scored.get("resize", "crop"))
    return resolve_sources(
        o.get("data"), o.get("val_data"), o.get("dataset"), size=int(o["size"]), data_root=o.get("data_root"),
    )


def val_sources(run: Run):
    """The run's val photos as ``(name, opener)`` items; the openers give the original,
    full-resolution photos."""
    return run_sources(run).val


class PhotosChanged(ValueError):
    """The val photos found now are not those the run scored; the message says what changed."""


def load_val_split(run: Run):
    """The run's val split exactly as it was scored (same size, resize mode, crop and
    skips), checked against the fingerprint config.json recorded: figures are drawn from
    the photos that were scored, or not at all. A named dataset's cached split is reused."""
    sources = run_sources(run)
    size, workers = int(run.options["size"]), int(run.options.get("workers", 2))
    # the protocol's val geometry (a `bench score --truth` folder recorded it resolved already)
    resize = val_mode(sources.resize, scoring_protocol_of(run.config).val_geometry)
    if sources.cache is not None:
        split, _ = build_cache(sources.val, size, False, sources.cache, resize, workers)
    else:
        split, _ = build_split(sources.val, size, False, workers, None, resize)
    data = run.config.get("data", {})
    recorded = (data.get("fingerprint") or {}).get("val")
    if isinstance(recorded, dict):
        change = describe_split_change("val", recorded, split_print(split), (data.get("files") or {}).get("val"),
                                       file_list(split))
        if change:
            raise PhotosChanged(f"the val photos at {where(run)} are not those this run scored ({change})")
    return split


def where(run: Run) -> str:
    o = run.options
    return ", ".join(str(o[k]) for k in ("data", "val_data") if o.get(k)) or f"--dataset {o.get('dataset') or 'sample'}"
