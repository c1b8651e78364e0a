"""Colourising the user's own photos with a trained generator, at full resolution.

The generator runs at its training resolution; only its ab (colour) is upsampled to the
photo's size and combined with the photo's own full-resolution L, so every detail of the
original survives (colour is low-frequency, lightness is where the detail is).
"""
from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from colorbench_datasets import (
    IMAGE_EXTENSIONS,
    UnreadableImage,
    find_images,
    lab_to_rgb,
    load_rgb,
    normalize_lab,
    rgb_to_lab,
)
from colorbench_datasets.lab import AB_SCALE
from PIL import Image
from torch.nn import functional as F
from tqdm.auto import tqdm

from bench.rundir.layout import is_within
from bench.rundir.read import Run, RunFolderError
from bench.rundir.write import atomic_write_bytes
from bench.score.scorer import predict_ab
from losses import parse_combination

log = logging.getLogger("colorbench")


class ColorizeError(ValueError):
    """Inputs or outputs that cannot be used; the message names the path and the fix."""


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def _lab(img: Image.Image) -> torch.Tensor:
    """(1,3,H,W) Lab of a PIL RGB image."""
    rgb = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    return rgb_to_lab(rgb)


def model_input(img: Image.Image, size: int) -> torch.Tensor:
    """The model's L at its training resolution: the whole photo resized (bicubic, as the
    training data) to ``size``², aspect ratio squashed rather than cropped so the predicted
    colour covers every pixel of the original."""
    small = img.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    L, _ = normalize_lab(_lab(small))
    return L


def colorize_image(G: torch.nn.Module, img: Image.Image, size: int) -> Image.Image:
    """``img`` (any size, colour or black-and-white) recoloured by ``G``, at ``img``'s size."""
    return colorize_images(G, [img], size)[0]


def colorize_images(G: torch.nn.Module, images: list[Image.Image], size: int, batch_size: int = 16) -> list[Image.Image]:
    """Several photos at once: one batched forward pass instead of one per photo."""
    L = torch.cat([model_input(img, size) for img in images])
    ab_small = predict_ab(G, L, batch_size).cpu().float()
    return [_combine(img, ab_small[i : i + 1]) for i, img in enumerate(images)]


def _combine(img: Image.Image, ab_small: torch.Tensor) -> Image.Image:
    """The photo's own full-resolution L with the model's ab upsampled to its size."""
    lab = _lab(img)
    h, w = lab.shape[-2:]
    # Bilinear with antialias: smooth when enlarging, no aliasing if the photo is smaller
    # than the training size.
    ab = F.interpolate(ab_small, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return to_image(lab_to_rgb(torch.cat([lab[:, :1], ab * AB_SCALE], 1))[0])


def gray_image(img: Image.Image) -> Image.Image:
    """What the model sees: the photo's lightness with no colour (ab = 0)."""
    lab = _lab(img)
    return to_image(lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], 1))[0])


def to_image(rgb: torch.Tensor) -> Image.Image:
    """sRGB (3, H, W) in [0, 1] as an 8-bit image, rounded to the nearest level."""
    return Image.fromarray((rgb.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8))


def _real(path: Path) -> str:
    """The path with every symlink resolved, for comparing files however they were named."""
    return os.path.realpath(path)


def _is_same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    except OSError:
        return False


def plan_jobs(inputs: list[str | Path], out: str | Path, overwrite: bool = False) -> list[Job]:
    """One output PNG per input photo. A folder is walked; its photos keep their relative
    path under ``out``, so equal file names in subfolders never overwrite each other.

    Checked before anything is written: no output may be an input photo (``album --out
    album`` would replace ``album/p0.png`` with its colourised version), even with
    ``overwrite``; an existing output file is refused unless ``overwrite``; an ``out``
    inside an input folder is not walked as input."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ColorizeError(f"--out {out} is a file; give a folder for the colourised PNGs")
    jobs: list[Job] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = find_images(item)
            if is_within(out, item, strict=True):  # --out is a subfolder: its (earlier) outputs are not inputs
                found = [p for p in found if not is_within(p, out, strict=True)]
            jobs += [Job(p, out / p.relative_to(item).with_suffix(".png")) for p in found]
        elif item.is_file():
            jobs.append(Job(item, out / f"{item.stem}.png"))
        elif item.exists() or item.is_symlink():
            what = "a broken symbolic link" if not item.exists() else "not a regular file (a FIFO or device?)"
            raise ColorizeError(f"input {item} is {what}; pass photo files or folders of photos")
        else:
            raise ColorizeError(f"input {item} does not exist; pass photo files or folders of photos")
    if not jobs:
        raise ColorizeError(
            f"no photos ({', '.join(IMAGE_EXTENSIONS)}) found in {', '.join(map(str, inputs))}"
        )
    unique: dict[str, Job] = {}
    for job in jobs:  # the same photo named twice (a file and its folder): once
        unique.setdefault(_real(job.source), job)
    jobs = list(unique.values())
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.target in seen:
            raise ColorizeError(
                f"{seen[job.target]} and {job.source} would both be written to {job.target}; "
                "colourise them into separate --out folders or rename one"
            )
        seen[job.target] = job.source
    sources = {_real(job.source): job.source for job in jobs}
    for job in jobs:
        source = sources.get(_real(job.target))
        if source is None and job.target.exists():
            source = next((s for s in sources.values() if _is_same_file(s, job.target)), None)
        if source is not None:
            raise ColorizeError(
                f"the output {job.target} would replace the input photo {source}; choose an --out folder "
                "outside the input folders (inputs are never overwritten, --overwrite or not)"
            )
    existing = [job.target for job in jobs if job.target.exists() or job.target.is_symlink()]
    if existing and not overwrite:
        raise ColorizeError(
            f"{len(existing)} output file(s) already exist in {out} (e.g. {existing[0]}); pass --overwrite to "
            "replace them, or choose another --out"
        )
    return jobs


def save_png(img: Image.Image, path: Path) -> None:
    """Atomic: a crash never leaves a truncated PNG under the final name."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed: Python's MemoryError, CUDA's
    OutOfMemoryError, or the RuntimeError torch's CPU allocator raises ("can't allocate
    memory")."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


def colorize_paths(
    G: torch.nn.Module, size: int, jobs: list[Job], chunk: int = 16, progress: bool = False
) -> tuple[list[Job], list[tuple[Job, str]]]:
    """Run every job, ``chunk`` photos per forward pass; unreadable inputs are skipped with
    their reason, not fatal."""
    done, skipped = [], []
    bar = tqdm(total=len(jobs), unit="photo", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(jobs), chunk):
        batch = []
        for job in jobs[start : start + chunk]:
            try:
                batch.append((job, load_rgb(job.source)))
            except UnreadableImage as exc:
                log.warning("skipped %s: %s", job.source, exc)
                skipped.append((job, str(exc)))
        if batch:
            try:
                outs = colorize_images(G, [img for _, img in batch], size, chunk)
            except (MemoryError, RuntimeError) as exc:  # one photo too large: find it, keep the rest
                if not out_of_memory(exc):
                    raise
                outs = None
            for i, (job, img) in enumerate(batch):
                try:
                    out = outs[i] if outs is not None else colorize_image(G, img, size)
                except (MemoryError, RuntimeError) as exc:
                    if not out_of_memory(exc):
                        raise
                    reason = (f"{img.size[0]}x{img.size[1]} px is too large to colourise at full resolution in "
                              "this machine's memory; downscale it first")
                    log.warning("skipped %s: %s", job.source, reason)
                    skipped.append((job, reason))
                    continue
                try:
                    save_png(out, job.target)
                except OSError as exc:  # a full or read-only disk: say what is already there
                    raise ColorizeError(
                        f"cannot write {job.target}: {exc.strerror or exc}; {len(done)} of {len(jobs)} photo(s) were "
                        f"written before it, each complete. Free space (or make the folder writable), or choose "
                        "another --out, then rerun with --overwrite") from None
                done.append(job)
        bar.update(len(jobs[start : start + chunk]))
    bar.close()
    return done, skipped


def resolve_combination(run: Run, loss: str) -> str:
    """A combination's name from its name or its ``--losses`` spec (``perceptual`` finds
    ``perceptual[random-vgg]``)."""
    for c in run.combinations:
        if loss in (c["name"], c["spec"]):
            return c["name"]
    canonical = _canonical(loss)  # `gan+100*l1` finds `100*l1+gan`
    for c in run.combinations:
        if canonical is not None and _canonical(c["spec"]) == canonical:
            return c["name"]
    known = ", ".join(c["name"] for c in run.combinations)
    raise RunFolderError(f"--loss {loss!r} is not a combination of {run.path}; choose one of: {known}")


def _canonical(spec: str) -> str | None:
    try:
        return parse_combination(spec).spec
    except ValueError:
        return None
