"""Where a run's photos come from, before any decoding: a folder (with train/ and val/
subfolders, ``--val-data``, or a split by file-name hash) or a dataset registered by name
(``@register_dataset``; coco.py and standard.py register theirs)."""
from __future__ import annotations

import difflib
import hashlib
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
    load_rgb,
    open_regular,
)
from .sample import TRAIN_PHOTOS, VAL_PHOTOS, sample_split

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


def register_dataset(name: str):
    """Register ``fn(**options) -> Sources`` as ``--dataset NAME``."""

    def wrap(fn):
        DATASETS[name] = fn
        return fn

    return wrap


@register_dataset("sample")
def sample_sources(**_) -> Sources:
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


def photo_items(folder: Path) -> list[Item]:
    """Every photo below ``folder`` as ``(name, opener)``, named by its path below it."""
    return _items(find_images(Path(folder)), Path(folder))


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
        raise DataError(unknown_dataset(name))
    return DATASETS[name](**dataset_options)


def unknown_dataset(name: str) -> str:
    """The message for a --dataset that is not registered, with the likeliest meant one
    (``coco`` -> ``coco-sample``)."""
    known = sorted(DATASETS)
    close = [k for k in known if k.startswith(str(name)) or str(name).startswith(k)]
    close = close or difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown --dataset {name!r}{hint}; choose one of: {', '.join(known)}"
