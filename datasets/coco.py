"""``coco-sample``: fastai's COCO sample, split exactly as the colorization tutorial did.

The tutorial (Shariatnia, "Colorizing black & white images with U-Net and conditional GAN",
2020) takes ``train_sample/*.jpg`` of fastai's ``coco_sample.tgz`` and runs::

    np.random.seed(123)
    paths_subset = np.random.choice(paths, 10_000, replace=False)
    rand_idxs = np.random.permutation(10_000)
    train_idxs, val_idxs = rand_idxs[:8000], rand_idxs[8000:]

on ``glob.glob`` order, which depends on the file system; Colorbench sorts the names first so
the subset is the same on every machine. Photos are resized straight to 256x256 (bicubic),
train photos flipped at random.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .download import Archive, extract, fetch, resolve_data_root
from .images import DataError, load_rgb
from .sources import Sources, register_dataset

log = logging.getLogger("colorbench")

# URL and check from fastai's URLs.COCO_SAMPLE and fastai/data/checks.txt (size in bytes,
# md5 of the first MiB: the only check fastai publishes for it).
COCO_SAMPLE = Archive(
    dataset="coco-sample",
    url="https://s3.amazonaws.com/fast-ai-coco/coco_sample.tgz",
    filename="coco_sample.tgz",
    md5="006cd55d633d94b36ecaf661467830ec",
    size=3_245_877_008,
    head_only=True,
)
FOLDER = "coco-sample"  # under the data root: the archive and what it unpacks to
IMAGES = Path("coco_sample") / "train_sample"


@dataclass(frozen=True)
class TutorialSplit:
    """The tutorial's subset: ``subset`` photos drawn with ``seed``, the first ``n_train``
    of a permutation for train and the rest for val."""

    subset: int = 10_000
    n_train: int = 8_000
    seed: int = 123


SPLIT = TutorialSplit()  # read at call time, so a test can use small counts


def tutorial_split(names: list[str], split: TutorialSplit = SPLIT) -> tuple[list[str], list[str]]:
    """The tutorial's train and val names, drawn from ``names`` (sorted here first).

    A private ``RandomState(seed)`` draws the same numbers as ``np.random.seed(seed)``
    followed by the global ``choice`` and ``permutation`` calls, without touching numpy's
    global state.
    """
    names = sorted(names)
    if len(names) < split.subset:
        raise DataError(
            f"coco-sample: the tutorial draws {split.subset:,} photos but only {len(names):,} were "
            "found; the archive is incomplete: delete it and its unpacked folder to fetch it again"
        )
    rs = np.random.RandomState(split.seed)
    subset = rs.choice(np.array(names), split.subset, replace=False)
    order = rs.permutation(split.subset)
    return [str(n) for n in subset[order[: split.n_train]]], [str(n) for n in subset[order[split.n_train :]]]


def coco_images(data_root: str | Path | None = None, progress: bool = True) -> Path:
    """The folder of unpacked ``train_sample`` photos, fetched and unpacked if need be.

    A folder unpacked by hand (``<root>/coco-sample/coco_sample/train_sample``) is used as is.
    """
    folder = resolve_data_root(data_root) / FOLDER
    images = folder / IMAGES
    archive_path = folder / COCO_SAMPLE.filename
    marker = folder / f".{COCO_SAMPLE.filename}.extracted"
    if images.is_dir() and (marker.is_file() or not archive_path.exists()):
        return images
    extract(fetch(COCO_SAMPLE, folder, progress), folder)
    if not images.is_dir():
        raise DataError(f"{archive_path} unpacked without {IMAGES}/; it is not fastai's coco_sample.tgz")
    return images


@register_dataset("coco-sample")
def coco_sample_sources(data_root: str | Path | None = None, progress: bool = True, **_) -> Sources:
    images = coco_images(data_root, progress)
    names = [p.name for p in images.glob("*.jpg")]
    train, val = tutorial_split(names, SPLIT)

    def items(chosen):
        return [(f"train_sample/{n}", partial(load_rgb, images / n)) for n in chosen]

    return Sources(
        items(train),
        items(val),
        f"coco-sample: fastai's COCO sample at {images}, the tutorial's split "
        f"({SPLIT.subset:,} drawn with numpy seed {SPLIT.seed} from {len(names):,} sorted names; "
        f"{SPLIT.n_train:,} train / {SPLIT.subset - SPLIT.n_train:,} val), resized to size x size",
        resize="squash",
    )
