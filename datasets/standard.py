"""``stl10``, ``cifar10`` and ``places365``: torchvision's dataset classes, Colorbench's pipeline.

The archives (URLs and md5 sums are the ones torchvision's classes publish) go through
``download.fetch``, which resumes, verifies and says where to put a file by hand when
offline, and ``download.extract``, which refuses members escaping the folder. torchvision's
class then reads the unpacked files (``download=False``: it checks them itself) and its
images feed the same Lab pipeline as a folder of photos -- except STL-10's binaries, which
are memory-mapped here rather than read whole on every load. STL-10 (train + 100k unlabeled)
and Places365 are too large for memory as float tensors, so they are kept as uint8 Lab
memory-mapped files (``cache.py``), built once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
from PIL import Image

from .download import Archive, extract, fetch, resolve_data_root
from .images import DataError, load_rgb
from .sources import Sources, register_dataset


@dataclass(frozen=True)
class Layout:
    """Where a torchvision set lives under the data root and what it natively measures."""

    folder: str
    native_size: int


CIFAR10 = Layout("cifar10", 32)
STL10 = Layout("stl10", 96)
PLACES365 = Layout("places365", 256)


def _archive(dataset: str, url: str, filename: str, md5: str) -> Archive:
    return Archive(dataset=dataset, url=url, filename=filename, md5=md5)


def prepare(layout: Layout, archives: list[Archive], data_root, progress: bool) -> Path:
    """Fetch and unpack every archive of a set into ``<data root>/<folder>``; returns it."""
    folder = resolve_data_root(data_root) / layout.folder
    for archive in archives:
        extract(fetch(archive, folder, progress), folder)
    return folder


def _array_items(prefix: str, images: np.ndarray, channels_first: bool, start: int = 0) -> list:
    """``(name, opener)`` per row of a uint8 image array, numbered from ``start``."""

    def opener(i: int) -> Image.Image:
        a = images[i]
        return Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0) if channels_first else a))

    return [(f"{prefix}/{start + i:06d}", partial(opener, i)) for i in range(len(images))]


def _stl10_images(folder: Path, filename: str) -> np.ndarray:
    """An STL-10 ``*_X.bin`` as an (N, 3, 96, 96) uint8 array, memory-mapped.

    torchvision's STL10 class md5-checks and reads all ~2.9 GB of train + unlabeled on every
    load, even when only the names are needed because the Lab cache exists; a memory map
    reads an image only when it is opened. The file is stored column-major per channel,
    as torchvision's reader (reshape, then swap the last two axes) also takes it.
    """
    path = folder / filename
    if not path.is_file() or path.stat().st_size % (3 * 96 * 96):
        raise DataError(
            f"stl10: {path} is missing or truncated; delete {folder.parent} (or its .extracted "
            "marker) to download and unpack the archive again"
        )
    return np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)


def _upsampling_warning(name: str, layout: Layout, size: int | None) -> list[str]:
    if size is not None and size > layout.native_size:
        return [f"{name} photos are {layout.native_size} px; --size {size} upsamples them "
                f"(use --size {layout.native_size} to train at their own resolution)"]
    return []


def _torchvision():
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:  # a dependency, but say what to do if it is missing
        raise DataError(f"named torchvision datasets need torchvision: pip install torchvision ({exc})") from exc
    return tvd


@register_dataset("cifar10")
def cifar10_sources(data_root=None, progress: bool = True, size: int | None = None, **_) -> Sources:
    tvd = _torchvision()
    cls = tvd.CIFAR10
    root = prepare(CIFAR10, [_archive("cifar10", cls.url, cls.filename, cls.tgz_md5)], data_root, progress)
    train, test = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    return Sources(
        _array_items("cifar10/train", train.data, False),
        _array_items("cifar10/test", test.data, False),
        f"cifar10: torchvision CIFAR10 at {root} (train 50,000 / test 10,000 as val, 32 px)",
        warnings=_upsampling_warning("cifar10", CIFAR10, size),
    )


@register_dataset("stl10")
def stl10_sources(data_root=None, progress: bool = True, size: int | None = None, **_) -> Sources:
    tvd = _torchvision()
    cls = tvd.STL10
    root = prepare(STL10, [_archive("stl10", cls.url, cls.filename, cls.tgz_md5)], data_root, progress)
    folder = root / cls.base_folder
    train, unlabeled, test = (_stl10_images(folder, f) for f in ("train_X.bin", "unlabeled_X.bin", "test_X.bin"))
    # Named as torchvision's split="train+unlabeled" numbers them: train first, then unlabeled.
    train_items = _array_items("stl10/train+unlabeled", train, True)
    train_items += _array_items("stl10/train+unlabeled", unlabeled, True, start=len(train))
    return Sources(
        train_items,
        _array_items("stl10/test", test, True),
        f"stl10: torchvision's STL-10 archive at {root} (train + unlabeled {len(train_items):,} / test "
        f"{len(test):,} as val, 96 px), uint8 Lab cache",
        warnings=_upsampling_warning("stl10", STL10, size),
        cache=root / "lab-cache",
    )


def places365_archives(cls) -> list[Archive]:
    """The small (256x256) standard variant: devkit, train and val image archives."""
    devkit = cls._DEVKIT_META["standard"]
    train = cls._IMAGES_META[("train-standard", True)]
    val = cls._IMAGES_META[("val", True)]
    return [_archive("places365", urljoin(cls._BASE_URL, f), f, md5) for f, md5 in (devkit, val, train)]


@register_dataset("places365")
def places365_sources(data_root=None, progress: bool = True, size: int | None = None, **_) -> Sources:
    tvd = _torchvision()
    cls = tvd.Places365
    root = prepare(PLACES365, places365_archives(cls), data_root, progress)
    # torchvision's own download renames the train archive's data_256/ to the folder its
    # class reads; our extraction must do the same.
    unpacked, expected = root / "data_256", root / "data_256_standard"
    if unpacked.is_dir() and not expected.exists():
        unpacked.rename(expected)
    try:
        train = cls(str(root), split="train-standard", small=True, download=False)
        val = cls(str(root), split="val", small=True, download=False)
    except RuntimeError as exc:  # torchvision's message for missing or corrupt file lists
        raise DataError(f"places365 at {root}: {exc}; delete that folder's .extracted markers to unpack again") from exc

    def items(ds):
        return [(Path(p).relative_to(root).as_posix(), partial(load_rgb, Path(p))) for p, _ in ds.imgs]

    return Sources(
        items(train),
        items(val),
        f"places365: torchvision Places365 standard, small (256 px) at {root} (train "
        f"{len(train.imgs):,} / val {len(val.imgs):,}), uint8 Lab cache",
        warnings=_upsampling_warning("places365", PLACES365, size),
        cache=root / "lab-cache",
    )
