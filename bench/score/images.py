"""The val photos as image files for the report's gallery (bench/report/gallery.py).

For the first ``count`` val photos (``--gallery-photos``), in the split's order, each
source gets a folder of its own::

    <i>.webp       the image as it was scored (the val crop at the run's --size)
    <i>.full.jpg   at the photo's own resolution: a model's colour upsampled onto the photo's
                   full-resolution lightness, as `bench colorize` makes it

Files are named by the photo's index in the val split, so no file name a user chose ever
becomes part of a path or a URL; the gallery's data maps index to name.

Each file is written whole (a temp file renamed), so a file that exists is complete, and
writing is incremental: a folder is filled in where it lacks files. That lets ``bench run``
keep the images off its critical path (``written_alongside``): the grayscale
inputs, the photos and each finished cell's predictions are written by one low-priority
thread while the cells train (at 2,000 val photos they took longer than loading the photos:
benchmarks/README.md), the run waits for what is left at its end, and a run stopped before
then writes the missing files when rerun. A cell trained again (a larger --steps) loses its
old images when its new generator is saved. The thread never builds a network nor uses the
trainer's: generators are copied (or loaded) in the main thread, so it never draws from
torch's global random numbers, which seed each cell's weights and dropout.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from colorbench_datasets import load_rgb, model_to_rgb
from colorbench_datasets.lab import _RGB_FROM_XYZ, _WHITE_D65, _XYZ_FROM_RGB
from PIL import Image

from bench.colorize import colorize_images, to_image
from bench.rundir.layout import GRAY, TRUTH, RunFolder
from bench.rundir.read import cells_in_order
from bench.rundir.write import atomic_write_bytes
from bench.score.scorer import GeneratorFileError, Scorer, gray_ab, load_generator, predict_ab

log = logging.getLogger("colorbench")

SCORED, FULL = "{}.webp", "{}.full.jpg"
CHUNK = 16  # photos decoded and colourised at once (a stop request is honoured between chunks)


def _encode(img: Image.Image, kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "webp":
        img.save(buf, format="WEBP", quality=80, method=4)
    else:
        img.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


# sRGB's 8-bit levels, linear; the luminance row of skimage's sRGB -> XYZ matrix; and what a
# gray (a = b = 0) of luminance 1 is in linear RGB (D65 white through the inverse matrix).
_LINEAR = np.where(np.arange(256) / 255 > 0.04045, ((np.arange(256) / 255 + 0.055) / 1.055) ** 2.4,
                   np.arange(256) / 255 / 12.92).astype(np.float32)
_LUMA = _XYZ_FROM_RGB[1].numpy().astype(np.float32)
_GRAY_GAIN = float((_RGB_FROM_XYZ @ _WHITE_D65)[1])


def gray_full(img: Image.Image) -> Image.Image:
    """What the model sees, at the photo's own resolution: its CIE lightness with no colour,
    as ``bench.colorize.gray_image`` makes it (within one 8-bit level), as one channel. The
    Lab round trip there is the identity on a pixel's luminance, so this is a lookup and a
    dot product: ~50x faster."""
    rgb = np.asarray(img.convert("RGB"))
    y = _LINEAR[rgb] @ _LUMA * _GRAY_GAIN
    v = np.where(y > 0.0031308, 1.055 * np.maximum(y, 0.0031308) ** (1 / 2.4) - 0.055, 12.92 * y)
    return Image.fromarray((np.clip(v, 0, 1) * 255 + 0.5).astype(np.uint8), mode="L")


def _runs(indices: list[int], longest: int) -> Iterator[slice]:
    """Consecutive runs of ``indices`` (sorted), each at most ``longest`` long, as slices."""
    start = None
    for k, i in enumerate(indices):
        if start is None:
            start, prev = i, i
        elif i != prev + 1 or i - start >= longest:
            yield slice(start, prev + 1)
            start = i
        prev = i
        if k == len(indices) - 1:
            yield slice(start, prev + 1)


class GalleryImages:
    """Writes the gallery's images of the first ``count`` photos of ``scorer``'s val split
    (None: all); ``openers`` give each photo (by name) at its own resolution, for the
    enlargements (None: the enlargements are left out). It keeps the scorer's val tensors
    (``L``, ``target_rgb``, on its device), not the scorer."""

    def __init__(self, scorer: Scorer, count: int | None, openers: dict[str, Callable[[], Image.Image]] | None):
        self.L, self.target_rgb, self.device = scorer.L, scorer.target_rgb, scorer.device
        self.image_names, self.openers = list(scorer.image_names), openers
        self.count = len(scorer) if count is None else min(count, len(scorer))
        self.background: BackgroundWriter | None = None  # set while written_alongside

    def on_split(self, split) -> "GalleryImages":
        """The same images made from ``split`` (the val split on the CPU, ``load_photos``'s):
        what writes gray's and the photos' images while jobs train, holding nothing on the GPU."""
        other = copy.copy(self)
        other.L, other.target_rgb, other.device, other.background = split.L, split.rgb, torch.device("cpu"), None
        return other

    def _absent(self, folder: Path) -> set[str]:
        """The file names ``folder`` lacks (all of them if it does not exist)."""
        kinds = (SCORED, FULL) if self.openers is not None else (SCORED,)
        try:
            names = set(os.listdir(folder))
        except OSError:
            names = set()
        return {kind.format(i) for i in range(self.count) for kind in kinds} - names

    def missing(self, folder: Path) -> list[int]:
        """The photos whose images ``folder`` lacks (all of them if it does not exist)."""
        absent = self._absent(folder)
        return [i for i in range(self.count) if SCORED.format(i) in absent or FULL.format(i) in absent]

    def _photos(self, rows: slice) -> list[Image.Image] | None:
        if self.openers is None:
            return None
        return [self.openers[name]().convert("RGB") for name in self.image_names[rows]]

    def _fill(self, folders: list[tuple[Path, Callable, Callable]], stop: Callable[[], bool] = lambda: False) -> bool:
        """Write the files ``folders`` lack: each is ``(folder, scored, full)``, ``scored(rows)``
        those photos as scored, (n, 3, H, W) in [0, 1], ``full(rows, photos)`` their
        enlargements from the photos at their own resolution (opened once for all the
        folders). Returns False if ``stop()`` ended it first."""
        absent = {folder: self._absent(folder) for folder, _, _ in folders}
        todo = sorted({int(name.split(".")[0]) for names in absent.values() for name in names})
        for folder, _, _ in folders:
            folder.mkdir(parents=True, exist_ok=True)
        for rows in _runs(todo, CHUNK):
            if stop():
                return False
            indices = range(rows.start, rows.stop)
            photos = self._photos(rows) if any(FULL.format(i) in names for names in absent.values() for i in indices) \
                else None
            for folder, scored, full in folders:
                if any(SCORED.format(i) in absent[folder] for i in indices):
                    for i, rgb in zip(indices, scored(rows)):
                        if SCORED.format(i) in absent[folder]:
                            atomic_write_bytes(folder / SCORED.format(i), _encode(to_image(rgb), "webp"))
                if photos is not None and any(FULL.format(i) in absent[folder] for i in indices):
                    for i, img in zip(indices, full(rows, photos)):
                        if FULL.format(i) in absent[folder]:
                            atomic_write_bytes(folder / FULL.format(i), _encode(img, "jpeg"))
        return True

    # ------------------------------------------------------------------ what each source shows

    def _model(self, G: torch.nn.Module, size: int):
        def scored(rows):
            L = self.L[rows].float()
            return model_to_rgb(L, predict_ab(G, L).to(L.device))

        return scored, lambda rows, photos: colorize_images(G, photos, size)

    def _baselines(self, gray: Path, truth: Path):
        def scored_gray(rows):
            L = self.L[rows].float()
            return model_to_rgb(L, gray_ab(L))

        def scored_truth(rows):  # the split's own RGB crops, what every model is scored against
            return self.target_rgb[rows].float() / 255

        return [(gray, scored_gray, lambda rows, photos: [gray_full(p) for p in photos]),
                (truth, scored_truth, lambda rows, photos: photos)]

    def write_model(self, folder: Path, G: torch.nn.Module, size: int) -> None:
        """A trained generator's predictions (``size``: the px it was trained at). Images of
        an earlier training of this cell go first. While ``written_alongside``, they are
        queued, with a copy of the generator (the thread never shares a module the trainer
        may use, nor builds one: that would draw from torch's global random numbers, which
        seed the next cell's weights and dropout)."""
        if folder.is_dir():  # an earlier training of this cell: its images are not this one's
            shutil.rmtree(folder)
        if self.background is not None:
            self._queue(folder.parent.name, folder, copy.deepcopy(G).eval(), size)
            return
        self._fill([(folder, *self._model(G, size))])

    def _queue(self, what: str, folder: Path, G: torch.nn.Module, size: int) -> None:
        self.background.submit(what, lambda stop: self._fill([(folder, *self._model(G, size))], stop))

    def write_predictions(self, folder: Path, rgb: torch.Tensor, files: list[Path]) -> None:
        """An outside colorizer's predictions ((N, 3, S, S) uint8, the split's order) as
        scored, and its own files (at their own resolution) as the enlargements."""
        if folder.is_dir():
            shutil.rmtree(folder)

        def scored(rows):
            return rgb[rows].float() / 255

        # enlarged: the colorizer's own image, not the photo, since that is what it made
        self._fill([(folder, scored, lambda rows, photos: [load_rgb(path) for path in files[rows]])])

    def write_baselines(self, gray: Path, truth: Path) -> None:
        """The grayscale inputs and the photos themselves (what either folder lacks)."""
        self._fill(self._baselines(gray, truth))


@contextlib.contextmanager
def written_alongside(gallery: GalleryImages | None, folder: RunFolder, config: dict, models: bool = True):
    """``with written_alongside(gallery, run folder, config):`` around the cells' training:
    one low-priority thread writes gray's and the photos' images, then (``models``) those of
    finished cells that lack them (a run stopped before they were written), then each
    cell's as ``write_model`` queues it. At the block's end it waits for what is left; if the
    block raises (a stop signal, an error), or a stop signal ends that wait (``StopNow``,
    a KeyboardInterrupt), the thread stops after its current few photos: every file written
    is whole, and the rerun writes the rest. ``gallery`` None (--gallery-photos 0): nothing."""
    if gallery is None:
        yield None
        return
    writer = BackgroundWriter()
    writer.submit("gray and the photos", lambda stop: gallery._fill(
        gallery._baselines(folder.gallery / GRAY, folder.gallery / TRUTH), stop))
    writer.start()
    try:
        if models:
            gallery.background = writer
            size = int(config["options"]["size"])
            for name, seed in cells_in_order(config):  # loaded here, before any cell seeds torch's random numbers
                cell = folder.cell(name, seed)
                if cell.is_done() and cell.generator.is_file() and gallery.missing(cell.gallery):
                    try:
                        G = load_generator(cell.generator, gallery.device)
                    except GeneratorFileError as exc:  # the report says so too
                        log.warning("%s", exc)
                        continue
                    gallery._queue(f"{name} seed {seed}", cell.gallery, G, size)
        yield writer
    except BaseException:
        writer.cancel()
        raise
    finally:
        gallery.background = None
    writer.finish()


class BackgroundWriter:
    """One thread, below the trainer's priority, running queued jobs ``fn(stop)`` in order.
    An error in a job is logged and ends that job alone: an image is never worth a run."""

    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="colorbench-gallery", daemon=True)
        # waited on rather than Thread.join: a join a signal interrupts takes the thread for ended
        # (CPython before 3.13), and the run would exit in the middle of its photos
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.pending = 0
        self.failed: list[str] = []

    def submit(self, what: str, fn: Callable[[Callable[[], bool]], bool]) -> None:
        with self._lock:
            self.pending += 1
        self._jobs.put((what, fn))

    def start(self) -> "BackgroundWriter":
        self._thread.start()
        return self

    def _work(self) -> None:
        try:
            self._jobs_in_turn()
        finally:
            self._done.set()

    def _jobs_in_turn(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: a thread's nice is its own
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            what, fn = self._jobs.get()
            if fn is None:
                return
            try:
                if not self._stop.is_set():
                    with torch.inference_mode():
                        fn(self._stop.is_set)
            except Exception as exc:  # noqa: BLE001 - a gallery image is never worth the run
                self.failed.append(what)
                log.warning("The gallery's images of %s could not all be written (%s: %s); the gallery shows "
                            "the others", what, type(exc).__name__, exc)
            finally:
                with self._lock:
                    self.pending -= 1

    def finish(self) -> None:
        """Wait for every queued job (saying so if any is left); a KeyboardInterrupt (a stop
        signal) while waiting stops the thread, then goes on."""
        self._jobs.put((None, None))
        started, left = time.perf_counter(), self.pending
        if left:
            log.info("Writing the gallery's images (%d source(s) left)...", left)
        try:
            self._done.wait()
        except BaseException:
            self.cancel()
            raise
        if left:
            log.info("Gallery images written in %.0fs", time.perf_counter() - started)

    def cancel(self) -> None:
        """Stop after the current few photos, and wait for that."""
        if not self._thread.is_alive() and not self._done.is_set():
            return  # never started
        self._stop.set()
        self._jobs.put((None, None))
        self._done.wait()
