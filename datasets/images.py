"""Finding photos in folders and reading them as RGB, saying why any file is skipped."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger("colorbench")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
GREY_TOLERANCE = 6  # channel spread (0-255) under which a pixel counts as grey; JPEG noise stays below
# Longest side over shortest side beyond which a photo is skipped: resizing its short side to
# --size would make the long side (and the memory) up to this many times the crop.
MAX_ASPECT = 32


class DataError(ValueError):
    """Unusable data (folder or images); the message names the path and the fix."""


class UnreadableImage(Exception):
    """This file is skipped; ``str(exc)`` is the reason shown in the log and config.json."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def display_name(name: str) -> str:
    """``name`` as valid text: bytes that are not UTF-8 (a Latin-1 ``caf\\xe9.jpg``, which
    Python holds as surrogates) are shown as ``\\xe9`` escapes, so names can be logged,
    hashed and written to JSON; the file itself is still opened by its real path."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path: Path) -> io.BufferedReader:
    """Open ``path`` for reading only if it is a regular file (a symlink to one is fine).

    Opened non-blocking and checked with ``fstat`` on the open descriptor, so a FIFO named
    ``pipe.jpg`` never blocks the run waiting for a writer and a device such as
    ``/dev/zero`` is never read; raises ``UnreadableImage`` with the reason."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        reason = "a broken symbolic link (its target does not exist)" if os.path.islink(path) else "the file disappeared"
        raise UnreadableImage(reason) from None
    except PermissionError:
        raise UnreadableImage("no permission to read it (fix with chmod +r)") from None
    except OSError as exc:
        raise UnreadableImage(f"cannot be opened ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnreadableImage(f"{_kind(mode)}, not a photo file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def check_folder(folder: Path, flag: str = "--data") -> None:
    """The cheap checks of a photo folder (exists, is a folder, readable), without walking it."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{flag}: data folder {folder} does not exist; pass an existing folder of photos")
    if not folder.is_dir():
        raise DataError(f"{flag}: {folder} is a file, not a folder; pass the folder that holds the photos")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DataError(f"{flag}: no permission to read folder {folder}; fix its permissions (chmod +rx)")


def find_images(folder: Path) -> list[Path]:
    """Every photo under ``folder`` (recursive, hidden entries ignored), sorted."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist; pass an existing folder of photos")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder; pass the folder that holds the photos")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DataError(f"no permission to read folder {folder}; fix its permissions (chmod +rx)")
    found, seen, loops = [], set(), []
    # Linked subfolders are followed (a photo collection assembled from links is common),
    # each real folder once: a link back up the tree, or a second link to the same folder,
    # is skipped and said, never walked forever or counted twice.
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            loops.append(root)
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    for root in loops:
        log.warning("%s: skipped, a link to a folder already read (%s)", root, os.path.realpath(root))
    return sorted(found)


def _deep_tiff(img: Image.Image, f) -> Image.Image | None:
    """A colour TIFF of more than 8 bits per sample, reduced to 8 bits by its real range.

    Pillow keeps only the high byte of 16-bit RGB TIFFs, so a 12-bit scan stored in 16 bits
    (values 0..4095) comes out nearly black and is taken for greyscale. Read the samples
    with tifffile instead and scale by the TIFF's MaxSampleValue if it gives one, else by
    the smallest 2^k - 1 (k = 8, 10, 12, 14, 16) at or above the brightest sample."""
    if img.format != "TIFF" or img.mode not in ("RGB", "RGBA"):
        return None
    bits = img.tag_v2.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    if max(bits) <= 8:
        return None
    import tifffile

    try:
        f.seek(0)
        with tifffile.TiffFile(io.BytesIO(f.read())) as tif:  # the open file: never a second open by name
            page = tif.pages[0]
            arr = page.asarray()
            if page.planarconfig == 2 and arr.ndim == 3 and arr.shape[0] in (3, 4):  # separate planes
                arr = np.moveaxis(arr, 0, -1)
            declared = page.tags.get("MaxSampleValue")
    except Exception:  # a layout tifffile cannot read: Pillow's 8 bits are all there is
        return None
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        return None
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float64))
        peak = 1.0 if arr.max() <= 1 else float(arr.max())
    else:
        top = float(arr.max())
        value = declared.value if declared is not None else None
        value = max(value) if isinstance(value, tuple) else value
        peak = float(value) if value and value >= top else next(
            (2.0**k - 1 for k in (8, 10, 12, 14, 16, 32) if top <= 2**k - 1), max(top, 1.0)
        )
    return Image.fromarray(np.clip(arr / peak * 255 + 0.5, 0, 255).astype(np.uint8))


def _orient(img: Image.Image, orientation) -> Image.Image:
    """EXIF orientation applied, as ``ImageOps.exif_transpose`` does."""
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    return img.transpose(method) if method is not None else img


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
        with open_regular(path) as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise UnreadableImage("empty file (0 bytes)")
            with Image.open(f) as img:
                img.seek(0)  # animated GIF/WebP/APNG: the first frame
                img.load()
                deep = _deep_tiff(img, f)
                if deep is not None:
                    rgb = _to_rgb(_orient(deep, img.getexif().get(0x0112)))
                else:
                    rgb = _to_rgb(ImageOps.exif_transpose(img))
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"not a readable image ({exc})") from exc
    if min(rgb.size) < min_size:
        raise UnreadableImage(f"{rgb.size[0]}x{rgb.size[1]} px is below the minimum of {min_size} px")
    return rgb


def check_aspect(width: int, height: int) -> None:
    """Skip a photo too elongated to resize: its short side goes to --size, so a 1x400000
    strip (1.6 KB as a PNG) would become a 72x28,800,000 image before the crop."""
    if max(width, height) > MAX_ASPECT * max(min(width, height), 1):
        ratio = max(width, height) / max(min(width, height), 1)
        raise UnreadableImage(
            f"{width}x{height} px: aspect ratio {ratio:.0f}:1 is beyond {MAX_ASPECT}:1 (resizing its short "
            "side would need too much memory); crop it to a less elongated photo"
        )


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
        key = os.fsencode(Path(p).relative_to(root).as_posix())  # the name's own bytes, UTF-8 or not
        bucket = int.from_bytes(hashlib.sha1(key).digest()[:8], "big") / 2**64
        (val if bucket < val_fraction else train).append(p)
    return train, val


def list_digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()[:16]
