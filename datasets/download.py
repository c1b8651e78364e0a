"""Fetching dataset archives into a cache folder: resumable, verified, safely extracted.

Every named dataset is one or more ``Archive`` records (URL, file name, checksum). ``fetch``
uses a copy already in the cache (downloaded earlier or placed there by hand), otherwise
downloads to ``<file>.part`` (resumed with an HTTP Range request after an interruption),
verifies it and renames it into place. ``extract`` unpacks into a scratch folder first and
refuses any member that would land outside the target folder.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from .images import DataError

CHUNK = 1 << 20
HEAD_BYTES = 1 << 20  # fastai's published check hashes only the first MiB of an archive


class DownloadError(DataError):
    """An archive that could not be fetched; the message says where to put it by hand."""


class ChecksumError(DataError):
    """An archive whose size or digest is not the published one."""


class ExtractionError(DataError):
    """An archive member that would be written outside the target folder, or a bad archive."""


@dataclass(frozen=True)
class Archive:
    """One downloadable file of a dataset and its published check.

    ``head_only``: ``md5`` covers only the first MiB, plus ``size`` for the whole file;
    this is all fastai publishes for its archives (``fastai/data/checks.txt``).
    """

    dataset: str
    url: str
    filename: str
    md5: str
    size: int | None = None
    head_only: bool = False


def default_data_root() -> Path:
    """``$COLORBENCH_DATA``, else ``colorbench/data`` in the platform's user cache folder."""
    if os.environ.get("COLORBENCH_DATA"):
        return Path(os.environ["COLORBENCH_DATA"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:  # XDG base directory convention
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "colorbench" / "data"


def resolve_data_root(data_root: str | Path | None) -> Path:
    return Path(data_root).expanduser() if data_root else default_data_root()


def offline() -> bool:
    return os.environ.get("COLORBENCH_OFFLINE", "") not in ("", "0")


def file_md5(path: Path, limit: int | None = None) -> str:
    h = hashlib.md5()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            block = f.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def check_archive(path: Path, archive: Archive) -> str | None:
    """``None`` if ``path`` matches the published size and digest, else what differs."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        return f"size {size:,} bytes, expected {archive.size:,}"
    got = file_md5(path, HEAD_BYTES if archive.head_only else None)
    if got != archive.md5:
        what = "md5 of the first MiB" if archive.head_only else "md5"
        return f"{what} {got}, expected {archive.md5}"
    return None


def by_hand(archive: Archive, target: Path) -> str:
    return (
        f"download {archive.url} by hand (a browser, or `curl -L -C - -o '{target}' '{archive.url}'`) "
        f"and put it at {target}, then rerun; a placed archive is verified and used"
    )


@dataclass
class Stream:
    """An open download: ``body`` starts at byte ``start`` of the file (0 if the server
    ignored the Range request), ``total`` is the whole file's size when known."""

    body: BinaryIO
    start: int
    total: int | None


def open_stream(url: str, start: int = 0, timeout: float = 60) -> Stream:
    """Open ``url`` from byte ``start``: an HTTP Range request, or a seek for file:// URLs."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        f = open(path, "rb")
        total = path.stat().st_size
        f.seek(min(start, total))
        return Stream(f, min(start, total), total)
    request = urllib.request.Request(url, headers={"User-Agent": "colorbench"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    response = urllib.request.urlopen(request, timeout=timeout)
    status = getattr(response, "status", 200)
    length = response.headers.get("Content-Length")
    if start and status == 206:
        # Content-Range: bytes START-END/TOTAL; a server that resumes elsewhere is not trusted.
        content_range = response.headers.get("Content-Range", "")
        try:
            first = int(content_range.split()[1].split("-")[0])
            total = int(content_range.rsplit("/", 1)[1])
        except (IndexError, ValueError):
            first, total = -1, None
        if first == start:
            return Stream(response, start, total)
        response.close()
        return open_stream(url, 0, timeout)
    # 200: the whole file (the server ignored Range); the caller starts over.
    return Stream(response, 0, int(length) if length and length.isdigit() else None)


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=not enabled, dynamic_ncols=True)


def download(archive: Archive, part: Path, progress: bool = True) -> None:
    """Append the rest of ``archive`` to ``part`` (restarting if the server can't resume)."""
    have = part.stat().st_size if part.is_file() else 0
    if archive.size is not None and have > archive.size:
        have = 0  # longer than the real file: not a prefix of it
    stream = open_stream(archive.url, have)
    with stream.body, open(part, "r+b" if part.is_file() else "wb") as out:
        out.seek(stream.start)
        out.truncate()
        total = archive.size or stream.total
        with _progress(total, stream.start, archive.filename, progress) as bar:
            while True:
                block = stream.body.read(CHUNK)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
        out.flush()
        os.fsync(out.fileno())


def fetch(archive: Archive, folder: Path, progress: bool = True) -> Path:
    """The verified archive at ``folder/filename``, downloaded there if it is not yet."""
    folder = Path(folder)
    target = folder / archive.filename
    if target.is_file():
        problem = check_archive(target, archive)
        if problem:
            raise ChecksumError(
                f"{target} is not the published {archive.dataset} archive ({problem}); it is "
                f"truncated, corrupt or another file. Delete it to download it again, or replace "
                f"it with a good copy of {archive.url}"
            )
        return target
    scheme = urlparse(archive.url).scheme
    if offline() and scheme != "file":
        raise DownloadError(f"{archive.dataset}: COLORBENCH_OFFLINE is set, so nothing is downloaded; " + by_hand(archive, target))
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        download(archive, part, progress)
    except (urllib.error.URLError, OSError) as exc:
        kept = part.stat().st_size if part.is_file() else 0
        resume = f" ({kept:,} bytes are kept in {part}; rerunning resumes from there)" if kept else ""
        raise DownloadError(
            f"could not download the {archive.dataset} archive {archive.url}: {exc}{resume}. "
            "If this machine is offline, " + by_hand(archive, target)
        ) from exc
    problem = check_archive(part, archive)
    if problem:
        part.unlink()  # a bad copy must not be resumed; the next run starts afresh
        raise ChecksumError(
            f"the downloaded {archive.dataset} archive from {archive.url} failed its check "
            f"({problem}); it was deleted. Rerun to download it again; if this repeats, the file "
            f"at that URL changed or a proxy alters it: " + by_hand(archive, target)
        )
    os.replace(part, target)
    return target


def _unsafe_member(member: tarfile.TarInfo, dest: Path) -> str | None:
    """Why ``member`` must not be extracted into ``dest`` (None if it is fine)."""
    path = (dest / member.name).resolve()
    if not path.is_relative_to(dest):
        return "its path leaves the target folder"
    if member.issym() or member.islnk():
        base = path.parent if member.issym() else dest
        if Path(member.linkname).is_absolute() or not (base / member.linkname).resolve().is_relative_to(dest):
            return f"it links to {member.linkname!r}, outside the target folder"
    if member.isdev():
        return "it is a device file"
    return None


def extract(archive_path: Path, dest: Path) -> Path:
    """Unpack a tar archive into ``dest`` once; returns ``dest``.

    Members go to a scratch folder inside ``dest`` and are moved into place only when all
    of them unpacked, so an interrupted extraction is redone rather than half-used. A
    member whose path or link target leaves ``dest`` stops the extraction with an error.
    """
    dest = Path(dest).resolve()
    done = dest / f".{archive_path.name}.extracted"
    if done.is_file():
        return dest
    scratch = dest / f".{archive_path.name}.extracting"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        with tarfile.open(archive_path) as tar:
            members = tar.getmembers()
            for m in members:
                problem = _unsafe_member(m, scratch)
                if problem:
                    raise ExtractionError(f"{archive_path}: refusing to extract {m.name!r}: {problem}")
            if hasattr(tarfile, "data_filter"):
                # The stdlib's own guard as well (Python 3.12, backported to 3.8.17+).
                tar.extractall(scratch, members, filter="data")
            else:
                tar.extractall(scratch, members)
    except ExtractionError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ExtractionError(
            f"could not unpack {archive_path} ({exc}); delete it so it is downloaded again, or "
            "replace it with a good copy"
        ) from exc
    for entry in scratch.iterdir():
        final = dest / entry.name
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        elif final.exists() or final.is_symlink():
            final.unlink()
        os.replace(entry, final)
    scratch.rmdir()
    done.write_text(f"{archive_path.name}\n")
    return dest
