"""Pretrained weights: where they are looked for, how they load, and an honest failure.

Every file lives in torch hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``), the same
place torchvision and pytorch-fid put their downloads, so a file fetched by either, or
imported with ``bench weights import``, is found by both.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class WeightsFile:
    key: str
    filename: str
    url: str
    used_for: str
    approx_mb: int | None = None  # the download's size, for `bench weights` before it is there

    @property
    def hash_prefix(self) -> str | None:
        """The leading hex digits of the file's SHA-256, which torchvision and pytorch-fid
        put in the name (``-<hex>.pth``), as ``torch.hub`` reads them."""
        match = HASH_IN_NAME.search(self.filename)
        return match.group(1) if match else None


# torch.hub's own rule (torch.hub.HASH_REGEX): the first "-<hex>." in the file name.
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")


class WeightsUnavailable(RuntimeError):
    """A pretrained file is neither cached nor downloadable; the message says how to fix it."""

    def one_line(self, consequence: str) -> str:
        """The warning a run prints for it: the file, why, what the run does instead."""
        state = "cannot be used" if self.cached else "is missing"
        return f"{self.weights.filename} {state} ({self.reason}): {consequence}. `bench weights` says how to get it."

    def __init__(self, weights: WeightsFile, reason: str, fix: str | None = None, cached: bool = False):
        self.weights, self.reason, self.cached = weights, reason, cached
        fix = fix or (
            f"Fetch {weights.url} on a machine with internet and run "
            f"`bench weights import {weights.filename}` here (or set TORCH_HOME to a cache that has it)."
        )
        where = "whose cached copy cannot be used" if cached else (
            f"which is not in {checkpoint_dir()} and could not be downloaded")
        super().__init__(f"{weights.used_for} needs {weights.filename}, {where} ({reason}). {fix}")
        # The metrics.csv note of a metric left without this file.
        self.note = f"missing weights file {weights.filename}" + (
            " (the cached file is not the published one: SHA-256 mismatch)" if cached else "")


def _vgg16() -> WeightsFile:
    from torchvision.models import VGG16_Weights

    url = VGG16_Weights.IMAGENET1K_V1.url
    return WeightsFile("vgg16", url.rsplit("/", 1)[-1], url, "the perceptual loss (VGG16)", 528)


def _alexnet() -> WeightsFile:
    from torchvision.models import AlexNet_Weights

    # lpips' AlexNet trunk is torchvision's alexnet(pretrained=True): these ImageNet weights.
    url = AlexNet_Weights.IMAGENET1K_V1.url
    return WeightsFile("alexnet", url.rsplit("/", 1)[-1], url, "LPIPS's AlexNet trunk", 233)


def _inception() -> WeightsFile:
    from pytorch_fid.inception import FID_WEIGHTS_URL

    url = FID_WEIGHTS_URL
    return WeightsFile("inception", url.rsplit("/", 1)[-1], url, "pytorch-fid's InceptionV3 (for FID and KID)", 92)


def _inception_torchvision() -> WeightsFile:
    from torchvision.models import Inception_V3_Weights

    url = Inception_V3_Weights.IMAGENET1K_V1.url
    return WeightsFile("inception-torchvision", url.rsplit("/", 1)[-1], url,
                       "torchvision's Inception v3 (FID and KID under the ddcolor and ct2 protocols)", 104)


def known_weights() -> dict[str, WeightsFile]:
    """Every pretrained file the harness may download, by key: vgg16, alexnet, inception,
    inception-torchvision."""
    return {w.key: w for w in (_vgg16(), _alexnet(), _inception(), _inception_torchvision())}


def checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(weights: WeightsFile) -> Path:
    return checkpoint_dir() / weights.filename


def offline() -> bool:
    """``COLORBENCH_OFFLINE=1`` (or HF's ``HF_HUB_OFFLINE``-style habit) skips download tries."""
    return os.environ.get("COLORBENCH_OFFLINE", "") not in ("", "0")


# Verdicts on cached files, by file name: {"size", "mtime_ns", "sha256"}. Kept beside the
# files so a 528 MB VGG16 is hashed once, not on every run; a file replaced or touched
# (other size or mtime) is hashed again.
VERDICTS = ".colorbench-sha256.json"
_verdicts: dict[tuple, str] = {}  # this process's: (path, size, mtime_ns) -> sha256


def _read_verdicts(folder: Path) -> dict:
    try:
        data = json.loads((folder / VERDICTS).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(path: Path, stat: os.stat_result, digest: str) -> None:
    _verdicts[(str(path), stat.st_size, stat.st_mtime_ns)] = digest
    verdicts = _read_verdicts(path.parent)
    verdicts[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    target = path.parent / VERDICTS
    tmp = target.with_name(f".{VERDICTS}.{os.getpid()}.tmp")
    try:  # temp file + rename: a killed run never leaves a half-written verdict file
        tmp.write_text(json.dumps(verdicts, indent=1) + "\n")
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only cache: hashed again next run, never trusted unhashed


def cached_sha256(path: Path) -> str:
    """The file's SHA-256, hashed once per (size, mtime) and remembered."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _verdicts:
        return _verdicts[key]
    known = _read_verdicts(path.parent).get(path.name)
    if isinstance(known, dict) and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns \
            and isinstance(known.get("sha256"), str):
        _verdicts[key] = known["sha256"]
        return known["sha256"]
    digest = sha256(path)
    _remember(path, stat, digest)
    return digest


def verify_cached(weights: WeightsFile, path: Path) -> str | None:
    """None if the cached file is the published one (its SHA-256 starts with the prefix in
    its name, as torch.hub checks downloads), else why not. A random network saved under
    ``alexnet-owt-7be5be79.pth`` must never be used and reported as LPIPS."""
    if not weights.hash_prefix:
        return None
    digest = cached_sha256(path)
    if digest.startswith(weights.hash_prefix):
        return None
    return (f"the cached file {path} is not the published {weights.filename}: its SHA-256 starts "
            f"{digest[:len(weights.hash_prefix)]}, the name says {weights.hash_prefix} (a truncated, re-saved or "
            "different file); delete it")


def cache_status(weights: WeightsFile) -> str:
    """``present``, ``MISSING`` or ``WRONG FILE`` (hash mismatch) for `bench weights`."""
    path = cached_path(weights)
    if not path.is_file():
        return "MISSING"
    return "present" if verify_cached(weights, path) is None else "WRONG FILE (hash mismatch: delete it)"


def load_state_dict(weights: WeightsFile) -> dict:
    """The state dict from the cache (checked against the hash in its name before its first
    use), downloading it first when that is possible."""
    path = cached_path(weights)
    if path.is_file():
        problem = verify_cached(weights, path)
        if problem:
            raise WeightsUnavailable(weights, problem, cached=True)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say which and how to fix it
            raise WeightsUnavailable(weights, f"the cached file {path} is unreadable: {exc}; delete it", cached=True) from exc
    if offline():
        raise WeightsUnavailable(weights, "COLORBENCH_OFFLINE is set")
    try:
        # download_url_to_file, not load_state_dict_from_url: the latter prints its own
        # "Downloading: ..." line before it knows whether there is a network at all.
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=weights.hash_prefix, progress=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailable(weights, f"download failed: {type(exc).__name__}: {str(exc)[:200]}") from exc


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lpips_linear_path(net: str = "alex", version: str = "0.1") -> Path:
    """LPIPS' learned linear layers: not a download, they ship inside the lpips package."""
    import lpips

    return Path(lpips.__file__).parent / "weights" / f"v{version}" / f"{net}.pth"


def load_lpips_linear(net: str = "alex", version: str = "0.1") -> dict:
    path = lpips_linear_path(net, version)
    if not path.is_file():
        entry = WeightsFile("lpips-linear", path.name, str(path), f"LPIPS (its v{version} linear layers)")
        raise WeightsUnavailable(
            entry, f"the installed lpips package has no {path}",
            "Reinstall it: pip install --force-reinstall lpips.",
        )
    return torch.load(path, map_location="cpu", weights_only=True)


class WeightsImportError(ValueError):
    """A file `bench weights import` refuses; the message says why and what to fetch."""


def identify(path: Path) -> WeightsFile:
    """Which known weights file ``path`` is: by its name, checked against the SHA-256 prefix
    the name carries; a renamed download is recognised by its hash alone."""
    known = list(known_weights().values())
    digest = sha256(path)
    entry = next((w for w in known if w.filename == path.name), None)
    if entry is None:
        entry = next((w for w in known if w.hash_prefix and digest.startswith(w.hash_prefix)), None)
        if entry is None:
            raise WeightsImportError(
                f"{path}: not a file Colorbench uses (expected one of: "
                f"{', '.join(w.filename for w in known)}), and its SHA-256 {digest[:12]}... matches "
                "none of them. `bench weights` lists each file and its URL."
            )
    elif entry.hash_prefix and not digest.startswith(entry.hash_prefix):
        raise WeightsImportError(
            f"{path}: refused, its SHA-256 starts {digest[:len(entry.hash_prefix)]} but "
            f"{entry.filename} must start {entry.hash_prefix} (the hash in its name): a truncated "
            f"or different download. Fetch {entry.url} again."
        )
    return entry


def import_weights(path: str | Path) -> tuple[WeightsFile, Path, bool]:
    """Put a downloaded weights file where it is looked for, after checking its hash.

    Returns the entry, the destination, and whether it was copied (False: an identical file
    was already there). The copy goes through a temp file and a rename, so an interrupted
    import never leaves a truncated file under the real name.
    """
    import shutil
    import tempfile

    path = Path(path)
    if not path.is_file():
        what = ("no such file" if not path.exists() else "a folder, not a weights file" if path.is_dir()
                else "not a regular file (a FIFO, a device or a socket): give the downloaded file itself")
        raise WeightsImportError(f"{path}: {what}")
    entry = identify(path)
    dest = cached_path(entry)
    if dest.is_file() and (dest.resolve() == path.resolve() or sha256(dest) == sha256(path)):
        return entry, dest, False
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return entry, dest, True
