"""Photos -> in-memory Lab tensors, and batched augmentation on the device.

Decoding, resizing and colour conversion happen once per run; an epoch then only indexes
tensors, so training never waits on data.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image

from .images import UnreadableImage, check_aspect, is_greyscale
from .lab import normalize_lab, rgb_to_lab


def load_size(size: int) -> int:
    """pix2pix's resize-then-random-crop margin (286 for 256), rounded to even."""
    return int(round(size * 9 / 8 / 2)) * 2


@dataclass
class LabSplit:
    """One split in the model's scale: ``L`` (N,1,S,S) and ``ab`` (N,2,S,S) in [-1, 1].

    ``rgb`` (N,3,S,S, uint8) is the ground-truth photo metrics compare against; ``names``
    identify the images; ``digests`` (one per image, of its stored pixels) let a run tell
    whether the photos changed since a cell was trained (``manifest.py``).
    """

    L: torch.Tensor
    ab: torch.Tensor
    rgb: torch.Tensor
    names: list[str]
    digests: list[str] | None = None

    def __len__(self) -> int:
        return self.L.shape[0]

    def to(self, device) -> "LabSplit":
        return LabSplit(self.L.to(device), self.ab.to(device), self.rgb.to(device), self.names, self.digests)


def pixel_digest(arr: np.ndarray) -> str:
    """A short digest of one stored image's pixels (what the model sees of the photo)."""
    return hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


def resize_and_crop(img: Image.Image, shorter: int, crop: int) -> np.ndarray:
    """Resize so the shorter side is ``shorter`` (bicubic, antialiased), centre-crop ``crop``²."""
    w, h = img.size
    scale = shorter / min(w, h)
    nw, nh = max(crop, round(w * scale)), max(crop, round(h * scale))
    if hasattr(img, "draft"):  # JPEG: let libjpeg decode at a reduced scale first (much faster)
        img.draft("RGB", (nw, nh))
    img = img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)
    left, top = (nw - crop) // 2, (nh - crop) // 2
    return np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def resize_exact(img: Image.Image, size: int) -> np.ndarray:
    """Resize to ``size``x``size`` ignoring the aspect ratio, bicubic: exactly what the
    colorization tutorial's ``transforms.Resize((SIZE, SIZE), BICUBIC)`` does to a PIL image
    (no JPEG draft decoding, no reducing gap, so pixels match it)."""
    return np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.uint8)


def squash_linear(img: Image.Image, size: int) -> np.ndarray:
    """Resize to ``size``x``size`` ignoring the aspect ratio with OpenCV's ``INTER_LINEAR``
    semantics, DDColor's val geometry (``cv2.resize(img, (256, 256))`` in its LabDataset):
    bilinear on pixel centres, output pixel d sampled at (d + 0.5) * in / out - 0.5, a position
    before the first pixel taking the first and one at or past the last taking the last, and
    no antialiasing (a large photo is sampled, not averaged). Computed in float64 and rounded
    to 8 bits (DDColor keeps the float32 result: at most half a level from it)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float64)
    h, w = arr.shape[:2]

    def taps(n_in: int, n_out: int):
        pos = (np.arange(n_out) + 0.5) * (1.0 / (n_out / n_in)) - 0.5  # cv2: scale = 1 / inv_scale
        first = np.floor(pos).astype(np.int64)
        frac = pos - first
        before, past = first < 0, first >= n_in - 1
        first[before], frac[before] = 0, 0.0
        first[past], frac[past] = n_in - 1, 0.0
        return first, np.minimum(first + 1, n_in - 1), frac

    y0, y1, fy = taps(h, size)
    x0, x1, fx = taps(w, size)
    rows = arr[y0] * (1 - fy)[:, None, None] + arr[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def crop_bilinear(img: Image.Image, size: int) -> np.ndarray:
    """CT2's val geometry: ``transforms.CenterCrop(min(w, h))`` then ``transforms.Resize(size)``
    on the PIL image (segm/data/coco.py): the largest centred square, its offset rounded as
    torchvision rounds it (``int(round((h - side) / 2))``, Python's round), then PIL's bilinear
    resize (antialiased when it shrinks), no JPEG draft decoding, no reducing gap."""
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    square = img.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.BILINEAR), dtype=np.uint8)


# How a split's photos reach the stored size: "crop" keeps the aspect ratio (shorter side,
# centre crop; train stored with load_size's margin for random crops), "squash" resizes to
# size x size directly (the tutorial's recipe; train gets flips only, no crop margin).
RESIZE_MODES = ("crop", "squash")


# The papers' val geometries (a protocol's --val-geometry, bench/score/presets.py), for val
# splits only: DDColor's cv2 squash and CT2's centre crop then bilinear resize.
VAL_RESIZE = {"cv2-squash": squash_linear, "crop-bilinear": crop_bilinear}


VAL_MODES = RESIZE_MODES + tuple(VAL_RESIZE)


# A protocol's --val-geometry (bench/score/presets.py GEOMETRIES): bicubic is Colorbench's own,
# the dataset's crop or squash.
GEOMETRIES = ("bicubic", *VAL_RESIZE)


def val_mode(resize: str, geometry: str = "bicubic") -> str:
    """The val split's resize mode for a dataset's own ``resize`` (crop or squash) under a
    protocol's val geometry: bicubic keeps the dataset's, a paper's geometry replaces it."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"--val-geometry {geometry!r}: expected one of {', '.join(GEOMETRIES)}")
    return resize if geometry == "bicubic" else geometry


def rgb_uint8_to_split(rgb: torch.Tensor, names: list[str], chunk: int = 256, digests: list[str] | None = None) -> LabSplit:
    """(N,3,S,S) uint8 -> LabSplit; converted in chunks to bound the float64 memory."""
    Ls, abs_ = [], []
    for i in range(0, rgb.shape[0], chunk):
        lab = rgb_to_lab(rgb[i : i + chunk].double() / 255)
        L, ab = normalize_lab(lab)
        Ls.append(L.float())
        abs_.append(ab.float())
    if not Ls:
        empty = torch.empty(0, 1, *rgb.shape[2:])
        return LabSplit(empty, empty.repeat(1, 2, 1, 1), rgb, names, digests)
    return LabSplit(torch.cat(Ls), torch.cat(abs_), rgb, names, digests)


def stored_size(size: int, train: bool, resize: str = "crop") -> int:
    """The side length a split is kept at: train keeps a random-crop margin in "crop" mode."""
    if resize not in (RESIZE_MODES if train else VAL_MODES):
        raise ValueError(f"unknown {'train' if train else 'val'} resize mode {resize!r}; use one of "
                         f"{RESIZE_MODES if train else VAL_MODES}")
    return load_size(size) if train and resize == "crop" else size


def prepare_photo(img: Image.Image, stored: int, resize: str = "crop") -> np.ndarray:
    """One photo at the stored size (S, S, 3) uint8, as ``resize`` says (``VAL_MODES``)."""
    if resize in VAL_RESIZE:
        return VAL_RESIZE[resize](img, stored)
    return resize_exact(img, stored) if resize == "squash" else resize_and_crop(img, stored, stored)


def prepare_image(item: tuple[str, Callable[[], Image.Image]], stored: int, resize: str = "crop"):
    """``(name, uint8 HxWx3 array or None, skip reason or None)`` for one ``(name, opener)``."""
    name, opener = item
    try:
        img = opener()
        check_aspect(*img.size)
        arr = prepare_photo(img, stored, resize)
    except UnreadableImage as exc:
        return name, None, str(exc)
    if is_greyscale(arr):
        return name, None, "greyscale photo (no colour to learn or score)"
    return name, arr, None


def build_split(
    images: Iterable[tuple[str, Callable[[], Image.Image]]],
    size: int,
    train: bool,
    workers: int = 2,
    progress: Callable | None = None,
    resize: str = "crop",
) -> tuple[LabSplit, list[tuple[str, str]]]:
    """Decode, resize, crop and convert a split; returns it and ``(name, reason)`` skips.

    Train images are stored at ``load_size(size)`` for a random ``size`` crop per batch;
    val images at ``size`` (centre crop). With ``resize="squash"`` both are stored at
    ``size``x``size`` (``resize_exact``); a val split may also take a paper's geometry
    (``VAL_RESIZE``: ``cv2-squash``, ``crop-bilinear``). ``images`` yields ``(name, opener)``; an opener
    raising ``UnreadableImage`` skips that image with its message as the reason.
    """
    stored = stored_size(size, train, resize)
    items = list(images)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda item: prepare_image(item, stored, resize), items)
        if progress is not None:
            results = progress(results, total=len(items))
        results = list(results)
    kept = [(n, a) for n, a, r in results if a is not None]
    skipped = [(n, r) for n, a, r in results if a is None]
    rgb = torch.from_numpy(np.stack([a for _, a in kept])).permute(0, 3, 1, 2).contiguous() if kept else (
        torch.empty(0, 3, stored, stored, dtype=torch.uint8)
    )
    return rgb_uint8_to_split(rgb, [n for n, _ in kept], digests=[pixel_digest(a) for _, a in kept]), skipped


def random_crop_flip(
    L: torch.Tensor, ab: torch.Tensor, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``size``² crop and a random horizontal flip per image, batched.

    Random numbers come from ``generator`` on the CPU, so every combination with the same
    seed sees the same crops on any device.
    """
    n, _, h, w = L.shape
    top = torch.randint(0, h - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    dev = L.device
    ar = torch.arange(size)
    rows = (top[:, None] + ar).to(dev)  # (n, size)
    cols = left[:, None] + ar
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(dev)
    x = torch.cat([L, ab], 1)
    idx_n = torch.arange(n, device=dev)[:, None, None]
    out = x.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return out[:, :1].contiguous(), out[:, 1:].contiguous()
