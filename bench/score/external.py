"""Scoring colorizers Colorbench did not train: folders of their colourised val photos.

``score_outside`` matches each folder's files to the val photos by name (the path below
the folder without its extension: ``sub/x.png`` is the prediction for ``sub/x.jpg``),
prepares each prediction to the val crop, and scores it with the run's ``Scorer`` under
the run's protocol, into ``<run>/external/<name>/`` -- seed-independent rows that the
report, ``bench compare`` and the gallery read beside the trained ones (bench/rundir/layout.py).

How sizes are reconciled: a prediction already at the val crop's size is used as it is; one
with the photo's own aspect ratio (a colorizer run on the full photo) is resized and cropped
exactly as the photo was; with ``--resize squash`` any size is squashed to the crop, as the
photos were. Anything else cannot be aligned with the photo and is refused by name.

Nothing is ever written into the truth or prediction folders: they are only read.
"""
from __future__ import annotations

import logging
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from colorbench_datasets import IMAGE_EXTENSIONS, UnreadableImage, find_images, load_rgb
from colorbench_datasets.images import display_name, is_greyscale
from colorbench_datasets.tensors import prepare_photo

from bench.rundir.layout import BASELINES, ExternalFolder, RunFolder, recorded_name
from bench.rundir.write import write_json
from bench.score.per_image import replicates_frame, scores_frame, write_frame
from bench.score.scorer import Scorer

log = logging.getLogger("colorbench")

# A prediction's aspect ratio within this of its photo's counts as the photo's (a colorizer
# that rounds sizes to a multiple of 8 or 32 changes it by a pixel or so).
ASPECT_TOLERANCE = 0.02
SHOWN = 5  # names a message lists before "… (N in all)"


class ScoreInputError(ValueError):
    """Predictions that cannot be scored as given; the message names the files and the fix."""


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f", … ({len(names)} in all)" if len(names) > SHOWN else "")


def stem(name: str) -> str:
    """A file's key for matching: its path below the folder without the extension."""
    path = PurePosixPath(name)
    return str(path.with_suffix("")) if path.suffix.lower() in IMAGE_EXTENSIONS else str(path)


@dataclass
class Outside:
    """One colorizer's predictions, matched to the val photos and prepared to the crop:
    ``rgb`` (n, 3, S, S) uint8 for the val photos ``indices`` (the split's order)."""

    name: str
    folder: Path
    rgb: torch.Tensor
    indices: list[int]
    of: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    greyscale: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    prepared: dict[str, int] = field(default_factory=dict)  # how many of each: as is, like the photo, squashed
    files: list[Path] = field(default_factory=list)  # each prediction's file, in ``indices``' order

    @property
    def complete(self) -> bool:
        return len(self.indices) == self.of

    def warnings(self) -> list[str]:
        """What was scored as it was but is probably not what the user meant."""
        out = []
        if self.greyscale:
            out.append(f"{len(self.greyscale)} of {len(self.indices)} predictions in {self.folder} have no colour "
                       f"(R = G = B), e.g. {_some(self.greyscale)}: scored as they are (they score as the gray "
                       "row does); if these are the grayscale inputs, point at the colorizer's output folder instead")
        if self.identical:
            out.append(f"{len(self.identical)} of {len(self.indices)} predictions in {self.folder} are pixel for pixel "
                       f"the val photos themselves, e.g. {_some(self.identical)}: scored as they are (perfectly); if "
                       "these are the ground-truth photos, point at the colorizer's output folder instead")
        return out

    def entry(self) -> dict:
        """What config.json's ``external`` list records of it."""
        return {"name": self.name, "folder": str(self.folder), "images": len(self.indices), "of": self.of,
                "missing": self.missing, "extra": self.extra, "greyscale": len(self.greyscale),
                "identical": len(self.identical), "prepared": self.prepared, "warnings": self.warnings()}


def match_files(folder: Path, photo_names: list[str]) -> tuple[dict[int, Path], list[str], list[str]]:
    """``({photo index: prediction file}, photos without a prediction, files matching no
    photo)``; two files for one photo (``x.png`` and ``x.jpg``) are refused."""
    files = find_images(folder)
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(stem(display_name(path.relative_to(folder).as_posix())), []).append(path)
    twice = {k: v for k, v in by_stem.items() if len(v) > 1}
    if twice:
        pairs = [" and ".join(p.name for p in v) for v in twice.values()]
        raise ScoreInputError(f"{folder}: {len(twice)} photo(s) have two prediction files each ({_some(pairs)}); "
                              "keep one file per photo")
    photos = {stem(name): i for i, name in enumerate(photo_names)}
    matched = {photos[k]: v[0] for k, v in by_stem.items() if k in photos}
    missing = [name for i, name in enumerate(photo_names) if i not in matched]
    extra = sorted(display_name(v[0].relative_to(folder).as_posix()) for k, v in by_stem.items() if k not in photos)
    return matched, missing, extra


# the val resize modes (datasets/tensors.py VAL_MODES) that squash any photo to size x size
SQUASHED = ("squash", "cv2-squash")


def prepare(img, photo_size: tuple[int, int] | None, size: int, resize: str) -> tuple[np.ndarray | None, str]:
    """A prediction as the val crop (S, S, 3) uint8, and how it was reconciled; None where it
    cannot be aligned with the photo (``photo_size``: the photo's own, None if unknown).
    ``resize``: the val split's mode, the protocol's geometry included (``cv2-squash``,
    ``crop-bilinear``): the prediction is prepared by the very function the photo was."""
    if img.size == (size, size):
        return np.asarray(img, dtype=np.uint8), "as is"
    if resize in SQUASHED:
        return prepare_photo(img, size, resize), "squashed like the photo"
    if photo_size is not None:
        aspect, photo_aspect = img.size[0] / img.size[1], photo_size[0] / photo_size[1]
        if abs(aspect - photo_aspect) <= ASPECT_TOLERANCE * photo_aspect:
            return prepare_photo(img, size, resize), "resized and cropped like the photo"
    return None, ""


def read_outside(name: str, folder, photo_names: list[str], truth_rgb: torch.Tensor, size: int, resize: str,
                 photo_sizes, allow_missing: bool = False, workers: int = 2) -> Outside:
    """``name``'s predictions from ``folder`` for the val photos ``photo_names`` (their
    prepared crops ``truth_rgb``, (N, 3, S, S) uint8). ``photo_sizes(i)``: photo i's own
    (width, height). Raises ``ScoreInputError`` for missing or extra files (unless
    ``allow_missing``: then the photos both have are scored, and it says so), unreadable
    ones and ones that cannot be aligned with their photo."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise ScoreInputError(f"{name}={folder}: the folder {what}; give NAME=FOLDER of the colorizer's output images")
    matched, missing, extra = match_files(folder, photo_names)
    if not matched:
        raise ScoreInputError(f"{name}={folder}: none of its {len(extra)} image file(s) is named like a val photo "
                              f"(e.g. {_some(extra)} against {_some(photo_names)}); predictions are matched by "
                              "file name without the extension")
    if missing and not allow_missing:
        raise ScoreInputError(f"{name}={folder} has no prediction for {len(missing)} of the {len(photo_names)} val "
                              f"photos: {_some(missing)}; colourise them too, or pass --allow-missing to score the "
                              f"{len(matched)} photos it has (every table then says so)")
    if extra and not allow_missing:
        raise ScoreInputError(f"{name}={folder} holds {len(extra)} image file(s) named like no val photo: "
                              f"{_some(extra)}; move them out (or check that this is the output for these val "
                              "photos), or pass --allow-missing to score only the files that match")
    indices = sorted(matched)

    def load(i):
        path = matched[i]
        try:
            img = load_rgb(path)
        except UnreadableImage as exc:
            return i, None, f"{path.name}: {exc}"
        arr, how = prepare(img, photo_sizes(i) if img.size != (size, size) and resize not in SQUASHED else None, size,
                           resize)
        if arr is None:
            w, h = photo_sizes(i)
            return i, None, (f"{path.name} is {img.size[0]}x{img.size[1]} px, neither the val crop's {size}x{size} "
                             f"nor the aspect ratio of its photo {photo_names[i]} ({w}x{h})")
        return i, (arr, how), None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(load, indices))
    bad = [reason for _, _, reason in results if reason]
    if bad:
        raise ScoreInputError(f"{name}={folder}: {len(bad)} prediction(s) cannot be scored: {_some(bad)}; replace "
                              "them with readable images of the photo (the whole photo, or its val crop)")
    arrays = {i: got for i, got, _ in results}
    rgb = torch.from_numpy(np.stack([arrays[i][0] for i in indices])).permute(0, 3, 1, 2).contiguous()
    prepared: dict[str, int] = {}
    for i in indices:
        prepared[arrays[i][1]] = prepared.get(arrays[i][1], 0) + 1
    greyscale = [photo_names[i] for i in indices if is_greyscale(arrays[i][0])]
    truth = truth_rgb[indices].cpu()
    same = (rgb == truth).flatten(1).all(1).tolist()
    identical = [photo_names[i] for i, s in zip(indices, same) if s]
    return Outside(name, folder, rgb, indices, len(photo_names), missing, extra, greyscale, identical, prepared,
                   [matched[i] for i in indices])


def check_name(name: str, taken: list[str]) -> None:
    """A colorizer's row name: not empty, not a baseline's, not a trained combination's."""
    if not name or not name.strip():
        raise ScoreInputError("a NAME=FOLDER pair has an empty NAME; name each colorizer, e.g. ddcolor=out/ddcolor")
    if name in BASELINES:
        raise ScoreInputError(f"{name!r} is a baseline row of every run; name the colorizer otherwise")
    if name in taken:
        raise ScoreInputError(f"{name!r} is a combination this run trained; name the colorizer otherwise")


def check_folder_free(where: ExternalFolder, name: str) -> None:
    """Refuse ``where`` for ``name`` when it holds another colorizer's scores, or files that
    are not a colorizer's: a folder is never shared by two names, nor silently reused."""
    if not where.path.exists() and not where.path.is_symlink():
        return
    holder = recorded_name(where.record)
    if holder == name:
        return  # its own earlier scores: replaced (said by the caller)
    what = f"the scores of {holder!r}" if holder is not None else "files that are not a colorizer's scores"
    raise ScoreInputError(f"{where.path} holds {what}, not {name!r}'s; name the colorizer otherwise, or move that "
                          "folder out of the run if it is not needed")


def score_outside(folder: RunFolder, scorer: Scorer, outside: Outside, gallery=None) -> dict:
    """Score ``outside`` into ``<run>/external/<name>/`` (record, per-image scores, FID/KID
    replicates, gallery images); returns its metrics.json record. All or nothing: the files
    are written into a staging folder beside it that replaces the folder only when complete,
    so a failure part-way keeps the earlier scores of this name, or no folder at all."""
    where = folder.external(outside.name)
    check_folder_free(where, outside.name)
    sub = scorer if outside.complete else scorer.subset(outside.indices)
    scores = sub.rgb_scores(outside.rgb.to(scorer.device))
    staging = ExternalFolder(where.path.with_name(f".{where.path.name}.partial"))
    shutil.rmtree(staging.path, ignore_errors=True)  # a killed earlier attempt's
    staging.path.mkdir(parents=True)
    try:
        write_frame(staging.per_image, scores_frame(outside.name, np.nan, sub.image_names, scores.per_image))
        replicates = replicates_frame(outside.name, np.nan, sub, scores) if outside.complete else None
        if replicates is not None and len(replicates):
            write_frame(staging.replicates, replicates)
        if gallery is not None and outside.complete:
            gallery.write_predictions(staging.gallery, outside.rgb, outside.files)
        # a perfect prediction's PSNR is infinite: kept as "inf" (JSON has no infinity; float() reads it back)
        means = {k: (str(v) if v in (math.inf, -math.inf) else v) for k, v in scores.means.items()}
        record = {"combination": outside.name, "status": "ok", "metrics": means, "notes": sub.notes,
                  "folder": str(outside.folder), "images": len(outside.indices), "of": outside.of}
        write_json(staging.record, record)
        _swap_in(staging.path, where.path)
    except BaseException:
        shutil.rmtree(staging.path, ignore_errors=True)
        raise
    return record


def _swap_in(new: Path, final: Path) -> None:
    """Put the complete folder ``new`` at ``final``, the earlier one (if any) removed only once
    the new one is in place."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
