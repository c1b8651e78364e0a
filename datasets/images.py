"""Finding photos in folders and reading them as RGB, saying why any file is skipped."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
GREY_TOLERANCE = 6  # channel spread (0-255) under which a pixel counts as grey; JPEG noise stays below


class DataError(ValueError):
    """Unusable data (folder or images); the message names the path and the fix."""


class UnreadableImage(Exception):
    """This file is skipped; ``str(exc)`` is the reason shown in the log and config.json."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def find_images(folder: Path) -> list[Path]:
    """Every photo under ``folder`` (recursive, hidden entries ignored), sorted."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist; pass an existing folder of photos")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder; pass the folder that holds the photos")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DataError(f"no permission to read folder {folder}; fix its permissions (chmod +rx)")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) greyscale: scale to 8 bits rather than clip at 255.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / peak * 255 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: Path, min_size: int = 1) -> Image.Image:
    """Open ``path`` as an RGB image, EXIF orientation applied, first frame of animations.

    Raises ``UnreadableImage`` with the reason for files that cannot serve as colour photos.
    """
    try:
        if Path(path).stat().st_size == 0:
            raise UnreadableImage("empty file (0 bytes)")
        with Image.open(path) as img:
            img.seek(0)  # animated GIF/WebP/APNG: the first frame
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"not a readable image ({exc})") from exc
    if min(rgb.size) < min_size:
        raise UnreadableImage(f"{rgb.size[0]}x{rgb.size[1]} px is below the minimum of {min_size} px")
    return rgb


def is_greyscale(rgb: np.ndarray) -> bool:
    """True when (nearly) every pixel has R = G = B: nothing to learn about colour."""
    arr = rgb.astype(np.int16)
    spread = arr.max(axis=-1) - arr.min(axis=-1)
    return float(np.percentile(spread, 99)) <= GREY_TOLERANCE


def hash_split(paths: list[Path], root: Path, val_fraction: float = 0.1) -> tuple[list[Path], list[Path]]:
    """A split that depends only on each file's path below ``root``, so adding a photo
    never moves another one across the split."""
    train, val = [], []
    for p in paths:
        key = Path(p).relative_to(root).as_posix().encode()
        bucket = int.from_bytes(hashlib.sha1(key).digest()[:8], "big") / 2**64
        (val if bucket < val_fraction else train).append(p)
    return train, val


def list_digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
