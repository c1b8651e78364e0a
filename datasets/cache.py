"""Splits too large for memory: Lab once into a uint8 memory-mapped file, read per batch.

The in-memory pipeline keeps float32 L and ab (12 bytes a pixel); Places365 or STL-10's
unlabeled set at their native sizes would need tens of GB to TB of RAM. Here each photo is
decoded, resized and converted to Lab once, quantised to uint8 (L in 100/255 steps, a/b in
whole units, offset by 128: the 8-bit Lab encoding OpenCV and ICC profiles use) and written
to ``lab.u8`` (N,3,S,S); val also keeps its uint8 RGB for the metrics. An epoch then only
reads rows and rescales them: no JPEG decoding and no Lab conversion after the first run.

``MappedLabSplit`` answers the calls the trainer and evaluator make on a ``LabSplit``
(``len``, ``.L[idx]``, ``.ab[idx]``, ``.rgb[a:b]``, ``.to(device)``), so nothing else
needs to know where the pixels live.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .images import DataError
from .lab import rgb_to_lab
from .tensors import pixel_digest, prepare_image, stored_size

log = logging.getLogger("colorbench")

FORMAT = 1  # bump when the file layout or quantisation changes: old caches are rebuilt
CHUNK = 512  # photos decoded and converted per step: bounds the float64 Lab memory


def quantize_lab(lab: torch.Tensor) -> torch.Tensor:
    """Lab (L 0..100, a/b about -110..110) -> uint8: L*255/100 and a/b + 128, rounded."""
    L = lab[:, :1] * (255 / 100)
    ab = lab[:, 1:] + 128
    return torch.cat([L, ab], 1).round().clamp(0, 255).to(torch.uint8)


def dequantize_L(q: torch.Tensor) -> torch.Tensor:
    """uint8 L -> the model's scale, ``L/50 - 1`` (see lab.normalize_lab)."""
    return q.float() * (2 / 255) - 1


def dequantize_ab(q: torch.Tensor) -> torch.Tensor:
    """uint8 a/b -> the model's scale, ``ab/110``."""
    return (q.float() - 128) / 110


def cache_key(names: list[str], size: int, train: bool, resize: str) -> str:
    """What the cached pixels depend on; a different key means a different file."""
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, size, train, resize]).encode())
    h.update("\n".join(names).encode())
    return h.hexdigest()[:16]


def _index(idx):
    """A tensor index -> numpy; slices and ints pass through."""
    if isinstance(idx, torch.Tensor):
        return idx.cpu().numpy()
    return idx


class _Rows:
    """``split.L`` / ``split.ab`` / ``split.rgb`` of a mapped split: indexing reads rows."""

    def __init__(self, array: np.ndarray, channels: slice, decode: Callable | None, device: torch.device):
        self.array, self.channels, self.decode, self.out = array, channels, decode, device

    device = torch.device("cpu")  # where index tensors must be: rows are gathered on the host

    @property
    def shape(self) -> tuple[int, ...]:
        n, _, h, w = self.array.shape
        return (n, self.channels.stop - self.channels.start, h, w)

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, idx) -> torch.Tensor:
        idx = _index(idx)
        if isinstance(idx, np.ndarray):
            # Read rows in file order (sequential on disk), then put them back in batch order.
            order = np.argsort(idx, kind="stable")
            rows = np.empty((len(idx), *self.shape[1:]), dtype=np.uint8)
            rows[order] = self.array[idx[order], self.channels]
        else:
            rows = np.array(self.array[idx, self.channels])  # a copy: the map is read-only
        t = torch.from_numpy(rows)
        t = self.decode(t) if self.decode else t
        return t.to(self.out, non_blocking=True)

    def to(self, device) -> "_Rows":
        return _Rows(self.array, self.channels, self.decode, torch.device(device))


@dataclass
class MappedLabSplit:
    """A split whose Lab (and, for val, RGB) lives in uint8 memory-mapped files."""

    lab: np.ndarray
    rgb_array: np.ndarray | None
    names: list[str]
    device: torch.device = torch.device("cpu")
    digests: list[str] | None = None  # per image, of its pixels; None for caches built before they were kept

    def __len__(self) -> int:
        return self.lab.shape[0]

    @property
    def L(self) -> _Rows:
        return _Rows(self.lab, slice(0, 1), dequantize_L, self.device)

    @property
    def ab(self) -> _Rows:
        return _Rows(self.lab, slice(1, 3), dequantize_ab, self.device)

    @property
    def rgb(self) -> _Rows:
        if self.rgb_array is None:
            raise DataError("this cached split keeps no RGB (train splits only need L and ab)")
        return _Rows(self.rgb_array, slice(0, 3), None, self.device)

    def to(self, device) -> "MappedLabSplit":
        return MappedLabSplit(self.lab, self.rgb_array, self.names, torch.device(device), self.digests)


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05:
        raise DataError(
            f"the uint8 Lab cache needs {needed / 2**30:.1f} GiB in {folder} but only "
            f"{free / 2**30:.1f} GiB are free; free some space, point --data-root elsewhere, or "
            "use a smaller --size"
        )


def build_cache(
    items: list[tuple[str, Callable]],
    size: int,
    train: bool,
    folder: Path,
    resize: str = "crop",
    workers: int = 2,
    progress: Callable | None = None,
) -> tuple[MappedLabSplit, list[tuple[str, str]]]:
    """The mapped split of ``items`` in ``folder/<key>/``, built on the first call.

    Files are written under a scratch name and ``meta.json`` last, so an interrupted build
    is never mistaken for a finished one.
    """
    stored = stored_size(size, train, resize)
    key = cache_key([n for n, _ in items], size, train, resize)
    where = Path(folder) / key
    meta_path = where / "meta.json"
    if not meta_path.is_file():
        _build(items, stored, train, where, resize, workers, progress)
    meta = _read_meta(where, stored, train)
    n = len(meta["names"])
    shape = (n, 3, stored, stored)
    lab = np.memmap(where / "lab.u8", np.uint8, "r", shape=shape) if n else np.zeros(shape, np.uint8)
    rgb = None
    if not train:
        rgb = np.memmap(where / "rgb.u8", np.uint8, "r", shape=shape) if n else np.zeros(shape, np.uint8)
    return MappedLabSplit(lab, rgb, meta["names"], digests=meta.get("digests")), [tuple(s) for s in meta["skipped"]]


def _read_meta(where: Path, stored: int, train: bool) -> dict:
    """A built cache's meta.json, checked against its files: a damaged cache is named with
    the fix instead of a JSON or mmap traceback (or rows read past a cut file)."""
    try:
        meta = json.loads((where / "meta.json").read_text())
        names, skipped = meta["names"], meta["skipped"]
        if not isinstance(names, list) or not isinstance(skipped, list):
            raise ValueError("names or skipped is not a list")
        digests = meta.get("digests")
        if digests is not None and (not isinstance(digests, list) or len(digests) != len(names)):
            raise ValueError("its digests do not match its names")
        expected = len(names) * 3 * stored * stored
        for name in ("lab.u8",) + (() if train else ("rgb.u8",)):
            size = (where / name).stat().st_size if len(names) else expected
            if size != expected:
                raise ValueError(f"{name} has {size:,} bytes, {expected:,} expected")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"the uint8 Lab cache in {where} is damaged ({exc}); delete that folder to rebuild it "
            "(its photos are converted once more)"
        ) from None
    return meta


def _build(items, stored, train, where: Path, resize, workers, progress) -> None:
    where.mkdir(parents=True, exist_ok=True)
    per_image = 3 * stored * stored
    _check_space(where, len(items) * per_image * (1 if train else 2))
    # Train needs only L and ab; val also keeps RGB, the ground truth the metrics compare to.
    outputs = {"lab.u8": where / "lab.u8.tmp"} | ({} if train else {"rgb.u8": where / "rgb.u8.tmp"})
    names, skipped, digests = [], [], []
    started = last_note = time.perf_counter()
    log.info(
        "Building the uint8 Lab cache of %d %s photos at %d px in %s (once; up to %.1f GB)",
        len(items), "train" if train else "val", stored, where, len(items) * per_image * (1 if train else 2) / 1e9,
    )
    with ExitStack() as stack:
        files = {k: stack.enter_context(open(p, "wb")) for k, p in outputs.items()}
        pool = stack.enter_context(ThreadPoolExecutor(max(1, workers)))
        chunks = range(0, len(items), CHUNK)
        for start in progress(chunks, total=len(chunks)) if progress is not None else chunks:
            results = list(pool.map(lambda it: prepare_image(it, stored, resize), items[start : start + CHUNK]))
            kept = [(n, a) for n, a, r in results if a is not None]
            skipped += [(n, r) for n, a, r in results if a is None]
            if not kept:
                continue
            rgb = torch.from_numpy(np.stack([a for _, a in kept])).permute(0, 3, 1, 2).contiguous()
            files["lab.u8"].write(quantize_lab(rgb_to_lab(rgb.double() / 255)).numpy().tobytes())
            if "rgb.u8" in files:
                files["rgb.u8"].write(rgb.numpy().tobytes())
            names += [n for n, _ in kept]
            digests += [pixel_digest(a) for _, a in kept]
            if progress is None and time.perf_counter() - last_note > 60:  # a build can take hours
                last_note = time.perf_counter()
                done = min(start + CHUNK, len(items))
                log.info("  %d / %d photos (%.0f%%) after %.0f s", done, len(items), 100 * done / len(items), last_note - started)
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
    for final, tmp in outputs.items():
        os.replace(tmp, where / final)
    meta = {
        "format": FORMAT, "stored": stored, "train": train, "resize": resize, "names": names, "skipped": skipped,
        "digests": digests,
    }
    tmp_meta = where / "meta.json.tmp"
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, where / "meta.json")  # last: its presence means the cache is complete
