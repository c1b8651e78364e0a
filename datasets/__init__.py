"""Image sources, Lab conversion and splits.

Installed under the import name ``colorbench_datasets`` so it never shadows Hugging Face's
``datasets`` package; the folder keeps the project's layout.

    from colorbench_datasets import load_data
    data = load_data("photos/", size=64)      # or dataset="sample"
    data.train.L, data.train.ab, data.val.rgb
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import coco, standard  # noqa: F401  (they register their datasets by name)
from .cache import build_cache
from .download import default_data_root
from .images import (
    IMAGE_EXTENSIONS,
    DataError,
    UnreadableImage,
    find_images,
    list_digest,
    load_rgb,
)
from .lab import denormalize_lab, lab_to_rgb, model_to_rgb, normalize_lab, rgb_to_lab
from .manifest import data_print, file_list
from .sources import DATASETS, Sources, photo_items, register_dataset, resolve_sources
from .tensors import LabSplit, build_split, load_size, random_crop_flip, stored_size, val_mode

log = logging.getLogger("colorbench")


@dataclass
class Data:
    train: LabSplit
    val: LabSplit
    manifest: dict
    # where the photos came from: each opener gives a photo at its own resolution (the
    # gallery's enlargements), without resolving and walking the folders a second time
    sources: Sources | None = None


# Bytes a stored pixel takes while a split is built and kept: uint8 RGB twice (the decoded
# crops, then their stack) and float32 L and ab.
BYTES_PER_STORED_PIXEL = 3 + 3 + 4 + 8


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes; None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def split_memory(n_train: int, n_val: int, size: int, resize: str = "crop") -> int:
    """Bytes the decoded splits take in memory while they are built and kept."""
    train = n_train * stored_size(size, True, resize) ** 2 if n_train else 0  # a val-only geometry has no train size
    return (train + n_val * stored_size(size, False, resize) ** 2) * BYTES_PER_STORED_PIXEL


def copies(split) -> list[list[str]]:
    """Groups of photos of ``split`` with identical prepared pixels (each group's names)."""
    digests = getattr(split, "digests", None)
    if digests is None:
        return []
    groups: dict[str, list[str]] = {}
    for name, digest in zip(split.names, digests):
        groups.setdefault(digest, []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def check_memory(n_train: int, n_val: int, size: int, resize: str = "crop") -> None:
    """Refuse, before decoding anything, splits that cannot fit in memory once decoded: a
    valid --size times many photos (1,400 photos at --size 2048 need ~110 GB) ends in a
    MemoryError an hour into loading otherwise."""
    needed = split_memory(n_train, n_val, size, resize)
    free = available_memory()
    if free is not None and needed > free:
        raise DataError(
            f"{n_train} train and {n_val} val photos at --size {size} need about {needed / 2**30:.1f} GiB of memory "
            f"once decoded (kept as float32 Lab), and {free / 2**30:.1f} GiB are available; use a smaller --size "
            "or fewer photos"
        )


def load_data(
    data: str | Path | None = None,
    val_data: str | Path | None = None,
    dataset: str | None = None,
    size: int = 64,
    val_fraction: float = 0.1,
    workers: int = 2,
    progress: Callable | None = None,
    val_geometry: str = "bicubic",
    **dataset_options,
) -> Data:
    """Every photo of both splits as in-memory Lab tensors (or, for sets that name a
    ``Sources.cache`` folder, uint8 Lab memory-mapped files), plus a manifest for config.json.

    ``progress``: a tqdm-like ``wrapper(iterable, total=n)`` for decoding and caching; without
    one, loading is quiet, downloads of named datasets included. ``val_geometry``: a protocol's
    ``--val-geometry`` (``tensors.GEOMETRIES``): bicubic prepares the val photos as the
    dataset says (crop or squash), a paper's geometry as that paper's code does."""
    dataset_options.setdefault("progress", progress is not None)
    sources = resolve_sources(data, val_data, dataset, val_fraction, size=size, **dataset_options)
    val_resize = val_mode(sources.resize, val_geometry)
    for w in sources.warnings:
        log.warning(w)
    if sources.is_sample:
        log.warning("Using the built-in sample set: a smoke test of the pipeline, not a benchmark.")
    if sources.cache is not None:
        train, train_skipped = build_cache(sources.train, size, True, sources.cache, sources.resize, workers, progress)
        val, val_skipped = build_cache(sources.val, size, False, sources.cache, val_resize, workers, progress)
    else:
        check_memory(len(sources.train), len(sources.val), size, sources.resize)
        train, train_skipped = build_split(sources.train, size, True, workers, progress, sources.resize)
        val, val_skipped = build_split(sources.val, size, False, workers, progress, val_resize)
    skipped = [{"split": s, "file": n, "reason": r} for s, lst in (("train", train_skipped), ("val", val_skipped)) for n, r in lst]
    if skipped:
        grey = sum("greyscale" in s["reason"] for s in skipped)
        log.warning(
            "Skipped %d image(s) (%d greyscale, %d unreadable); the list is in config.json.",
            len(skipped), grey, len(skipped) - grey,
        )
        for s in skipped:
            if "greyscale" not in s["reason"]:
                log.info("  skipped %s: %s", s["file"], s["reason"])
    for split, name, found in ((train, "train", len(sources.train)), (val, "val", len(sources.val))):
        if len(split) == 0:
            raise DataError(
                f"no usable {name} images: {found} found, all skipped "
                f"({'; '.join(sorted({s['reason'] for s in skipped if s['split'] == name})[:3])}). "
                "Point --data/--val-data at colour photos."
            )
    duplicates = {name: copies(split) for name, split in (("train", train), ("val", val))}
    for name, groups in duplicates.items():
        if groups:
            log.warning("%d %s photo(s) are copies of others (the same pixels), e.g. %s: %s", sum(map(len, groups)) - len(groups),
                        name, " = ".join(groups[0][:3]), "paired tests count them once" if name == "val" else
                        "they weigh more in training")
    manifest = {
        "source": sources.description,
        "is_sample": sources.is_sample,
        "resize": sources.resize,
        "val_resize": val_resize,
        "cache": None if sources.cache is None else str(sources.cache),
        "train_images": len(train),
        "val_images": len(val),
        # the val photos with different pixels: the sample size the paired tests may count on
        "distinct_val_images": len(val) - sum(len(g) - 1 for g in duplicates["val"]),
        "duplicates": {name: groups for name, groups in duplicates.items() if groups},
        "train_files_sha256": list_digest(train.names),
        "val_files_sha256": list_digest(val.names),
        # What each cell records of the photos it was trained and scored on (a rerun keeps a
        # finished cell only if they are the same), and the per-file digests that let it
        # name the files that changed.
        "fingerprint": data_print(train, val),
        "files": {"train": file_list(train), "val": file_list(val)},
        "skipped": skipped,
        "warnings": sources.warnings,
    }
    return Data(train, val, manifest, sources)


def load_val_photos(folder: str | Path, size: int = 256, resize: str = "crop", workers: int = 2,
                    progress: Callable | None = None) -> Data:
    """A folder of photos as a val split alone (``bench score --truth``): prepared exactly
    as a run's val photos (``resize``: crop or squash to ``size``, or a paper's val geometry,
    ``tensors.VAL_MODES``), no train split."""
    folder = Path(folder)
    items = photo_items(folder)
    if not items:
        raise DataError(f"no photos ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}; check --truth")
    check_memory(0, len(items), size, resize)
    val, skipped = build_split(items, size, False, workers, progress, resize)
    if len(val) == 0:
        raise DataError(f"no usable photos in {folder}: all {len(items)} skipped "
                        f"({'; '.join(sorted({r for _, r in skipped})[:3])}); point --truth at colour photos")
    for name, reason in skipped:
        log.warning("skipped %s: %s", name, reason)
    groups = copies(val)
    train = LabSplit(val.L[:0], val.ab[:0], val.rgb[:0], [], [])
    manifest = {
        "source": f"{folder}: the val photos of `bench score --truth`", "is_sample": False, "resize": resize,
        "val_resize": resize,
        "cache": None, "train_images": 0, "val_images": len(val),
        "distinct_val_images": len(val) - sum(len(g) - 1 for g in groups), "duplicates": {"val": groups} if groups else {},
        "train_files_sha256": list_digest([]), "val_files_sha256": list_digest(val.names),
        "fingerprint": data_print(train, val), "files": {"train": {}, "val": file_list(val)},
        "skipped": [{"split": "val", "file": n, "reason": r} for n, r in skipped], "warnings": [],
    }
    sources = Sources([], items, manifest["source"], resize=resize)
    return Data(train, val, manifest, sources)


__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "Data",
    "DataError",
    "LabSplit",
    "Sources",
    "UnreadableImage",
    "default_data_root",
    "denormalize_lab",
    "find_images",
    "lab_to_rgb",
    "load_data",
    "load_rgb",
    "load_val_photos",
    "photo_items",
    "load_size",
    "model_to_rgb",
    "normalize_lab",
    "random_crop_flip",
    "register_dataset",
    "resolve_sources",
    "rgb_to_lab",
]
