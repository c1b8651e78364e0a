"""What photos a cell was trained and scored on, and what changed since.

A finished cell's scores are only comparable with the other rows of its table if they were
computed on the same val photos, and a checkpoint can only be resumed on the train photos
whose order it saved. ``split_print`` is the record of a split both keep: the image count,
a digest of the names and a digest of every stored image's pixels (so a photo replaced
under the same name, or decoded differently, is noticed too). ``describe_change`` says in
words what differs between two records, naming files when the per-file lists are known.
"""
from __future__ import annotations

import hashlib

from .images import list_digest

# Per-file digests are kept in config.json's data manifest up to this many images per
# split (to name the files that changed); above it only the split digests are.
MAX_LISTED_FILES = 20_000


def _pixels_sha256(names: list[str], digests: list[str]) -> str:
    text = "\n".join(f"{n}\t{d}" for n, d in zip(names, digests))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def split_print(split) -> dict:
    """``{"images", "files_sha256", "pixels_sha256"}`` of a ``LabSplit`` or mapped split.

    ``files_sha256`` is config.json's ``train_files_sha256``/``val_files_sha256`` (names
    only); ``pixels_sha256`` is None for a split whose per-image digests are unknown (a
    memory-mapped cache built before they were kept), which is then compared by names."""
    names = list(split.names)
    digests = getattr(split, "digests", None)
    return {
        "images": len(names),
        "files_sha256": list_digest(names),
        "pixels_sha256": None if digests is None else _pixels_sha256(names, digests),
    }


def data_print(train, val) -> dict:
    """The record a cell keeps of the data it was trained (train) and scored (val) on."""
    return {"train": split_print(train), "val": split_print(val)}


def file_list(split) -> dict[str, str] | None:
    """``{name: pixel digest}`` of a split, for naming changed files later; None if too long
    or unknown."""
    digests = getattr(split, "digests", None)
    if digests is None or len(digests) > MAX_LISTED_FILES:
        return None
    return dict(zip(split.names, digests))


def _some(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", … ({len(names)} in all)" if len(names) > n else "")


def describe_split_change(split: str, old: dict, new: dict, old_files: dict | None = None, new_files: dict | None = None) -> str | None:
    """None when ``old`` and ``new`` (``split_print`` records) describe the same photos, else
    what changed, e.g. ``val: 6 -> 6 images, same names, other pixels (va001.jpg changed)``."""
    same_names = old.get("files_sha256") == new.get("files_sha256")
    pixels_known = old.get("pixels_sha256") is not None and new.get("pixels_sha256") is not None
    same_pixels = not pixels_known or old.get("pixels_sha256") == new.get("pixels_sha256")
    if old.get("images") == new.get("images") and same_names and same_pixels:
        return None
    text = f"{split}: {old.get('images', '?')} -> {new.get('images', '?')} images"
    if old_files is not None and new_files is not None:
        removed = sorted(set(old_files) - set(new_files))
        added = sorted(set(new_files) - set(old_files))
        changed = sorted(n for n in set(old_files) & set(new_files) if old_files[n] != new_files[n])
        parts = [f"{label} {_some(names)}" for label, names in
                 (("removed", removed), ("added", added), ("changed", changed)) if names]
        if parts:
            return f"{text} ({'; '.join(parts)})"
    if same_names:
        return f"{text}, same file names but other pixels (photos replaced or edited, or decoded by another Pillow)"
    return f"{text}, other file names"


def describe_change(old: dict, new: dict, old_files: dict | None = None, new_files: dict | None = None, splits=("train", "val")) -> list[str]:
    """What differs between two ``data_print`` records, split by split."""
    out = []
    for split in splits:
        if split not in old:
            continue
        change = describe_split_change(
            split, old[split], new[split], (old_files or {}).get(split), (new_files or {}).get(split)
        )
        if change:
            out.append(change)
    return out
