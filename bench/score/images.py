"""The val photos as image files for the report's gallery (bench/report/gallery.py), written
once, when a model (or the gray baseline and the photos themselves) is scored.

For the first ``count`` val photos (``--gallery-photos``), in the split's order, each
source gets a folder of its own::

    <i>.webp       the image as it was scored (the val crop at the run's --size)
    <i>.full.jpg   at the photo's own resolution: a model's colour upsampled onto the photo's
                   full-resolution lightness, as `bench colorize` makes it

Files are named by the photo's index in the val split, so no file name a user chose ever
becomes part of a path or a URL; the gallery's data maps index to name.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Callable

import torch
from colorbench_datasets import load_rgb, model_to_rgb
from PIL import Image

from bench.colorize import colorize_images, gray_image, to_image
from bench.rundir.write import atomic_write_bytes
from bench.score.scorer import Scorer, gray_ab, predict_ab

SCORED, FULL = "{}.webp", "{}.full.jpg"
CHUNK = 64  # photos decoded and colourised at once


def _encode(img: Image.Image, kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "webp":
        img.save(buf, format="WEBP", quality=80, method=4)
    else:
        img.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


class GalleryImages:
    """Writes the gallery's images of the first ``count`` photos of ``scorer``'s val split
    (None: all); ``openers`` give each photo (by name) at its own resolution, for the
    enlargements (None: the enlargements are left out)."""

    def __init__(self, scorer: Scorer, count: int | None, openers: dict[str, Callable[[], Image.Image]] | None):
        self.scorer, self.openers = scorer, openers
        self.count = len(scorer) if count is None else min(count, len(scorer))

    def _photos(self, start: int, stop: int) -> list[Image.Image] | None:
        if self.openers is None:
            return None
        return [self.openers[name]().convert("RGB") for name in self.scorer.image_names[start:stop]]

    def _write(self, folder: Path, scored: Callable[[slice], torch.Tensor],
               full: Callable[[slice, list[Image.Image]], list[Image.Image]]) -> None:
        """``scored(rows)``: those photos as scored, (n, 3, H, W) in [0, 1]; ``full(rows, photos)``:
        their enlargements, from the photos at their own resolution."""
        if folder.is_dir():  # an earlier training of this cell: its images are not this one's
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for start in range(0, self.count, CHUNK):
            stop = min(start + CHUNK, self.count)
            for i, rgb in zip(range(start, stop), scored(slice(start, stop))):
                atomic_write_bytes(folder / SCORED.format(i), _encode(to_image(rgb), "webp"))
            photos = self._photos(start, stop)
            if photos is not None:
                for i, img in zip(range(start, stop), full(slice(start, stop), photos)):
                    atomic_write_bytes(folder / FULL.format(i), _encode(img, "jpeg"))

    def write_model(self, folder: Path, G: torch.nn.Module, size: int) -> None:
        """A trained generator's predictions (``size``: the px it was trained at)."""
        def scored(rows):
            L = self.scorer.L[rows].float()
            return model_to_rgb(L, predict_ab(G, L).to(L.device))

        self._write(folder, scored, lambda rows, photos: colorize_images(G, photos, size))

    def write_predictions(self, folder: Path, rgb: torch.Tensor, files: list[Path]) -> None:
        """An outside colorizer's predictions ((N, 3, S, S) uint8, the split's order) as
        scored, and its own files (at their own resolution) as the enlargements."""
        def scored(rows):
            return rgb[rows].float() / 255

        # enlarged: the colorizer's own image, not the photo, since that is what it made
        self._write(folder, scored, lambda rows, photos: [load_rgb(path) for path in files[rows]])

    def write_baselines(self, gray: Path, truth: Path) -> None:
        """The grayscale inputs and the photos themselves."""
        def scored_gray(rows):
            L = self.scorer.L[rows].float()
            return model_to_rgb(L, gray_ab(L))

        def scored_truth(rows):  # the split's own RGB crops, what every model is scored against
            return self.scorer.target_rgb[rows].float() / 255

        self._write(gray, scored_gray, lambda rows, photos: [gray_image(p) for p in photos])
        self._write(truth, scored_truth, lambda rows, photos: photos)
