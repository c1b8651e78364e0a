"""Image sources, Lab conversion and splits.

Installed under the import name ``colorbench_datasets`` so it never shadows Hugging Face's
``datasets`` package; the folder keeps the project's layout.

    from colorbench_datasets import load_data
    data = load_data("photos/", size=64)      # or dataset="sample"
    data.train.L, data.train.ab, data.val.rgb
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from .images import (
    IMAGE_EXTENSIONS,
    DataError,
    UnreadableImage,
    display_name,
    find_images,
    hash_split,
    list_digest,
    load_rgb,
    open_regular,
)
from .manifest import data_print, file_list
from .lab import denormalize_lab, lab_to_rgb, model_to_rgb, normalize_lab, rgb_to_lab
from .tensors import LabSplit, build_split, load_size, random_crop_flip

log = logging.getLogger("colorbench")

Item = tuple[str, Callable]
DATASETS: dict[str, Callable[..., "Sources"]] = {}


@dataclass
class Sources:
    """Where a run's photos come from, before any decoding."""

    train: list[Item]
    val: list[Item]
    description: str
    is_sample: bool = False
    warnings: list[str] = field(default_factory=list)
    # "crop" (aspect kept, centre crop, random-crop margin) or "squash" (size x size
    # directly, as the colorization tutorial); see tensors.RESIZE_MODES.
    resize: str = "crop"
    # Set for sets too large for memory: splits are kept as uint8 Lab memory-mapped files
    # in this folder (built once, see cache.py) instead of in-memory float tensors.
    cache: Path | None = None


@dataclass
class Data:
    train: LabSplit
    val: LabSplit
    manifest: dict


def register_dataset(name: str):
    """Register ``fn(**options) -> Sources`` as ``--dataset NAME``."""

    def wrap(fn):
        DATASETS[name] = fn
        return fn

    return wrap


@register_dataset("sample")
def sample_sources(**_) -> Sources:
    from .sample import TRAIN_PHOTOS, VAL_PHOTOS, sample_split

    def items(photos):
        return [(name, (lambda im=im: im)) for name, im in sample_split(photos)]

    return Sources(
        items(TRAIN_PHOTOS),
        items(VAL_PHOTOS),
        "sample: scikit-image's bundled photos in 3x3 tiles (a smoke test, NOT a benchmark)",
        is_sample=True,
    )


def _items(paths: list[Path], root: Path) -> list[Item]:
    # Names are valid text even for file names that are not UTF-8 (shown escaped); the
    # opener keeps the real path.
    return [(display_name(p.relative_to(root).as_posix()), partial(load_rgb, p)) for p in paths]


def _digest_file(path: Path) -> str | None:
    """The file's SHA-1, or None for anything that is not a readable regular file (a FIFO,
    a dangling link...): those are skipped, with their reason, when the photos load."""
    try:
        digest = hashlib.sha1()
        with open_regular(path) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except (UnreadableImage, OSError):
        return None


def folder_sources(data: Path, val_data: Path | None = None, val_fraction: float = 0.1) -> Sources:
    """A folder of photos: its ``train/`` + ``val/`` (or ``test/``) subfolders, else
    ``val_data``, else a split by file-name hash."""
    data = Path(data)
    find_images(data)  # existence and permission errors first, with the folder's name
    warnings = []
    if val_data is not None:
        train_root, val_root = data, Path(val_data)
        train, val = find_images(train_root), find_images(val_root)
        how = f"train {train_root}, val {val_root}"
        shared = ({_digest_file(p) for p in train} & {_digest_file(p) for p in val}) - {None}
        if shared:
            warnings.append(
                f"{len(shared)} photo(s) appear in both {train_root} and {val_root}: val scores "
                "will be optimistic; remove the duplicates from one folder"
            )
    else:
        val_dir = next((data / d for d in ("val", "test") if (data / d).is_dir()), None)
        if (data / "train").is_dir() and val_dir is not None:
            train_root, val_root = data / "train", val_dir
            train, val = find_images(train_root), find_images(val_root)
            how = f"{data}: train/ and {val_dir.name}/ subfolders"
        else:
            train_root = val_root = data
            train, val = hash_split(find_images(data), data, val_fraction)
            how = f"{data}: split by file-name hash, {val_fraction:.0%} val"
    for root, paths, flag in ((train_root, train, "--data"), (val_root, val, "--val-data")):
        if not paths:
            raise DataError(
                f"no photos ({', '.join(IMAGE_EXTENSIONS)}) found in {root} for the "
                f"{'train' if paths is train else 'val'} split; check {flag}"
            )
    return Sources(_items(train, train_root), _items(val, val_root), how, warnings=warnings)


def resolve_sources(
    data: str | Path | None = None,
    val_data: str | Path | None = None,
    dataset: str | None = None,
    val_fraction: float = 0.1,
    **dataset_options,
) -> Sources:
    if data is not None and dataset is not None:
        raise DataError("give either --data DIR or --dataset NAME, not both")
    if data is not None:
        return folder_sources(Path(data), None if val_data is None else Path(val_data), val_fraction)
    if val_data is not None:
        raise DataError("--val-data needs --data (the training photos) too")
    name = dataset or "sample"
    if name not in DATASETS:
        raise DataError(f"unknown --dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**dataset_options)


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


def check_memory(n_train: int, n_val: int, size: int, resize: str = "crop") -> None:
    """Refuse, before decoding anything, splits that cannot fit in memory once decoded: a
    valid --size times many photos (1,400 photos at --size 2048 need ~110 GB) ends in a
    MemoryError an hour into loading otherwise."""
    from .tensors import stored_size

    needed = (n_train * stored_size(size, True, resize) ** 2 + n_val * stored_size(size, False, resize) ** 2) * BYTES_PER_STORED_PIXEL
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
    **dataset_options,
) -> Data:
    """Every photo of both splits as in-memory Lab tensors (or, for sets that name a
    ``Sources.cache`` folder, uint8 Lab memory-mapped files), plus a manifest for config.json.

    ``progress``: a tqdm-like ``wrapper(iterable, total=n)`` for decoding and caching; without
    one, loading is quiet, downloads of named datasets included."""
    dataset_options.setdefault("progress", progress is not None)
    sources = resolve_sources(data, val_data, dataset, val_fraction, size=size, **dataset_options)
    for w in sources.warnings:
        log.warning(w)
    if sources.is_sample:
        log.warning("Using the built-in sample set: a smoke test of the pipeline, not a benchmark.")
    if sources.cache is not None:
        from .cache import build_cache

        train, train_skipped = build_cache(sources.train, size, True, sources.cache, sources.resize, workers, progress)
        val, val_skipped = build_cache(sources.val, size, False, sources.cache, sources.resize, workers, progress)
    else:
        check_memory(len(sources.train), len(sources.val), size, sources.resize)
        train, train_skipped = build_split(sources.train, size, True, workers, progress, sources.resize)
        val, val_skipped = build_split(sources.val, size, False, workers, progress, sources.resize)
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
    manifest = {
        "source": sources.description,
        "is_sample": sources.is_sample,
        "resize": sources.resize,
        "cache": None if sources.cache is None else str(sources.cache),
        "train_images": len(train),
        "val_images": len(val),
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
    return Data(train, val, manifest)


# Named datasets register themselves on import (they need Sources and register_dataset).
from . import coco, standard  # noqa: E402,F401
from .download import default_data_root  # noqa: E402

__all__ = [
    "DATASETS",
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
    "load_size",
    "model_to_rgb",
    "normalize_lab",
    "random_crop_flip",
    "register_dataset",
    "resolve_sources",
    "rgb_to_lab",
]
