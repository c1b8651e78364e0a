import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from colorbench_datasets import DataError, load_data, random_crop_flip, resolve_sources
from colorbench_datasets.images import hash_split, is_greyscale
from conftest import write_photos


def test_train_val_subfolders_are_the_split(photo_dir):
    data = load_data(photo_dir, size=32)
    assert len(data.train) == 16 and len(data.val) == 6
    assert data.train.L.shape == (16, 1, 36, 36)  # stored with the random-crop margin
    assert data.val.L.shape == (6, 1, 32, 32) and data.val.rgb.dtype == torch.uint8
    assert data.train.L.min() >= -1 and data.train.L.max() <= 1 and data.train.ab.abs().max() <= 1


def test_flat_folder_is_split_by_name_hash_deterministically(tmp_path):
    paths = write_photos(tmp_path / "flat" / "nested", 40)
    train, val = hash_split(paths, tmp_path / "flat")
    assert len(train) + len(val) == 40 and 0 < len(val) < 12
    assert set(val) == set(hash_split(list(reversed(paths)), tmp_path / "flat")[1])
    sources = resolve_sources(tmp_path / "flat")
    assert sorted(n for n, _ in sources.val) == sorted(p.relative_to(tmp_path / "flat").as_posix() for p in val)


def test_val_data_folder_and_overlap_warning(tmp_path):
    write_photos(tmp_path / "a", 8, seed=3)
    write_photos(tmp_path / "b", 4, seed=3)  # same seed: the first 4 photos are identical
    sources = resolve_sources(tmp_path / "a", tmp_path / "b")
    assert len(sources.train) == 8 and len(sources.val) == 4
    assert any("4 photo(s) appear in both" in w for w in sources.warnings)


def test_greyscale_photos_are_skipped_and_counted(tmp_path):
    write_photos(tmp_path / "d" / "train", 6)
    write_photos(tmp_path / "d" / "val", 3, seed=5)
    grey = np.asarray(Image.open(tmp_path / "d" / "train" / "img000.jpg").convert("L").convert("RGB"))
    Image.fromarray(grey).save(tmp_path / "d" / "train" / "grey.jpg", quality=90)
    assert is_greyscale(grey)
    data = load_data(tmp_path / "d", size=32)
    assert len(data.train) == 6
    assert data.manifest["skipped"] == [{"split": "train", "file": "grey.jpg", "reason": "greyscale photo (no colour to learn or score)"}]


def test_missing_and_empty_folders_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no photos .* found in .*empty"):
        load_data(tmp_path / "empty")


def test_sample_set_is_built_in_and_flagged():
    data = load_data(size=32)
    assert data.manifest["is_sample"] and "NOT a benchmark" in data.manifest["source"]
    assert len(data.train) == 45 and len(data.val) == 18


def test_random_crop_flip_is_seeded_and_crops_within_the_image():
    L = torch.arange(2 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    ab = torch.stack([L[:, 0], -L[:, 0]], 1)
    a = random_crop_flip(L, ab, 4, torch.Generator().manual_seed(3))
    b = random_crop_flip(L, ab, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (2, 1, 4, 4) and torch.equal(a[1][:, 0], a[0][:, 0]) and torch.equal(a[1][:, 1], -a[0][:, 0])
    for i in range(2):
        rows = a[0][i, 0]
        # each crop row is a contiguous (possibly mirrored) run of an original row
        diffs = (rows[:, 1:] - rows[:, :-1]).unique()
        assert diffs.numel() == 1 and diffs.abs().item() == 1


@pytest.mark.slow
def test_bench_works_when_huggingface_datasets_is_installed(tmp_path):
    """A foreign top-level `datasets` package first on sys.path must not break bench."""
    fake = tmp_path / "site" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("HF = True\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    code = (
        "import datasets; assert datasets.HF\n"
        "from colorbench_datasets import load_data\n"
        "import bench.run.runner, losses\n"
        "print(len(load_data(size=32).train))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "45"


def test_copies_within_a_split_are_found_and_counted_once(tmp_path):
    from conftest import logged_warnings, write_photos

    write_photos(tmp_path / "train", 8, size=40)
    val = write_photos(tmp_path / "val", 4, size=40, seed=9)
    for k in range(3):  # three copies of the first val photo, under other names
        shutil.copy(val[0], tmp_path / "val" / f"copy{k}{val[0].suffix}")
    with logged_warnings("3 val photo\\(s\\) are copies of others"):
        data = load_data(tmp_path, size=32)
    assert data.manifest["val_images"] == 7 and data.manifest["distinct_val_images"] == 4
    (group,) = data.manifest["duplicates"]["val"]
    assert len(group) == 4 and "train" not in data.manifest["duplicates"]


def test_linked_subfolders_are_followed_once_and_loops_are_said(tmp_path):
    from conftest import logged_warnings, write_photos
    from colorbench_datasets import find_images

    root = tmp_path / "photos"
    write_photos(root / "own", 3, size=40)
    write_photos(tmp_path / "elsewhere", 2, size=40, seed=5)
    (root / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "own" / "back").symlink_to(root, target_is_directory=True)  # a loop
    with logged_warnings("a link to a folder already read") as said:
        found = find_images(root)
    assert len(found) == 5 and sum("linked" in p.parts for p in found) == 2
    assert len(said) == 1 and "back" in said[0]
