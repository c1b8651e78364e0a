"""Named datasets against small local archives of the real layouts (no network)."""
import hashlib
import json
import pickle
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from colorbench_datasets import DataError, load_data, resolve_sources
from colorbench_datasets import coco
from colorbench_datasets.coco import TutorialSplit, tutorial_split
from colorbench_datasets.images import list_digest
from conftest import write_photos


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _tar_folder(archive, folder, arcname) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)


def tutorial_reference(paths, subset, n_train):
    """The tutorial's own lines, on numpy's global state (restored afterwards)."""
    state = np.random.get_state()
    try:
        np.random.seed(123)
        paths_subset = np.random.choice(paths, subset, replace=False)
        rand_idxs = np.random.permutation(subset)
        train_idxs = rand_idxs[:n_train]
        val_idxs = rand_idxs[n_train:]
        return list(paths_subset[train_idxs]), list(paths_subset[val_idxs])
    finally:
        np.random.set_state(state)


def test_production_split_is_the_tutorials_numbers():
    assert coco.SPLIT == TutorialSplit(subset=10_000, n_train=8_000, seed=123)


@pytest.mark.parametrize("n_files,split", [(50, TutorialSplit(20, 16)), (12_345, coco.SPLIT)], ids=["small", "production"])
def test_tutorial_split_matches_the_tutorial_code_on_sorted_names(n_files, split):
    names = [f"{i:012d}.jpg" for i in np.random.default_rng(0).permutation(10**7)[:n_files]]
    before = np.random.get_state()[1].copy()
    train, val = tutorial_split(list(reversed(names)), split)  # input order must not matter
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's global state untouched
    ref_train, ref_val = tutorial_reference(sorted(names), split.subset, split.n_train)
    assert train == ref_train and val == ref_val
    assert len(train) == split.n_train and len(val) == split.subset - split.n_train
    assert not set(train) & set(val)


def test_too_few_photos_for_the_subset_is_a_clear_error():
    with pytest.raises(DataError, match="draws 20 photos but only 5"):
        tutorial_split([f"{i}.jpg" for i in range(5)], TutorialSplit(20, 16))


@pytest.fixture
def coco_archive(tmp_path, monkeypatch):
    """A coco_sample.tgz of fastai's layout with 25 photos, registered as the published one."""
    src = tmp_path / "src"
    write_photos(src / "train_sample", 25, size=40, seed=4, prefix="0000000")
    (src / "annotations").mkdir()
    (src / "annotations" / "train_sample.json").write_text("{}")
    archive = tmp_path / "coco_sample.tgz"
    _tar_folder(archive, src, "coco_sample")
    monkeypatch.setattr(coco, "COCO_SAMPLE", replace(coco.COCO_SAMPLE, md5=_md5(archive), size=archive.stat().st_size, head_only=False))
    monkeypatch.setattr(coco, "SPLIT", TutorialSplit(20, 16))
    return archive


def test_coco_sample_placed_by_hand_trains_on_the_tutorial_split(coco_archive, tmp_path):
    root = tmp_path / "root"
    # Offline (conftest) and nothing placed yet: the error says where the archive goes.
    res = CliRunner().invoke(main, ["run", "--dataset", "coco-sample", "--data-root", str(root), "--losses", "l1", "-q"])
    assert res.exit_code != 0 and coco.COCO_SAMPLE.url in res.output
    assert str(root / "coco-sample" / "coco_sample.tgz") in res.output.replace("\n", "")

    (root / "coco-sample").mkdir(parents=True)
    (root / "coco-sample" / "coco_sample.tgz").write_bytes(coco_archive.read_bytes())
    out = tmp_path / "run"
    res = CliRunner().invoke(main, [
        "run", "--dataset", "coco-sample", "--data-root", str(root), "--losses", "l1", "--size", "32",
        "--width", "8", "--epochs", "1", "--batch-size", "4", "--out", str(out), "-q",
    ])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "config.json").read_text())["data"]
    names = sorted(p.name for p in (root / "coco-sample" / "coco_sample" / "train_sample").iterdir())
    train, val = tutorial_reference(names, 20, 16)
    assert manifest["train_images"] == 16 and manifest["val_images"] == 4
    assert manifest["train_files_sha256"] == list_digest([f"train_sample/{n}" for n in train])
    assert manifest["val_files_sha256"] == list_digest([f"train_sample/{n}" for n in val])
    assert manifest["resize"] == "squash"


def test_coco_sample_is_resized_straight_to_size_like_the_tutorial(coco_archive, tmp_path):
    root = tmp_path / "root"
    (root / "coco-sample").mkdir(parents=True)
    (root / "coco-sample" / "coco_sample.tgz").write_bytes(coco_archive.read_bytes())
    data = load_data(dataset="coco-sample", size=32, data_root=root)
    assert data.train.L.shape == (16, 1, 32, 32)  # no crop margin: flips only
    # The tutorial's transforms.Resize((SIZE, SIZE), BICUBIC) on the PIL image, pixel for pixel.
    from torchvision import transforms

    name = data.val.names[0]
    photo = Image.open(root / "coco-sample" / "coco_sample" / name).convert("RGB")
    expected = np.asarray(transforms.Resize((32, 32), transforms.InterpolationMode.BICUBIC)(photo))
    assert np.array_equal(data.val.rgb[0].permute(1, 2, 0).numpy(), expected)


def test_unknown_dataset_lists_the_named_ones():
    with pytest.raises(DataError, match="coco-sample.*places365.*stl10"):
        resolve_sources(dataset="imagenet")


# --- torchvision sets: fake archives in the real layouts, torchvision's classes read them ---


def _pickle(path, obj) -> None:
    path.write_bytes(pickle.dumps(obj))


@pytest.fixture
def cifar_archive(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    rng = np.random.default_rng(0)
    folder = tmp_path / "src" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_list, test_list = [], []
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}", {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [0, 1, 2]})
        train_list.append([f"data_batch_{i}", _md5(folder / f"data_batch_{i}")])
    _pickle(folder / "test_batch", {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]})
    test_list.append(["test_batch", _md5(folder / "test_batch")])
    _pickle(folder / "batches.meta", {"label_names": [str(i) for i in range(10)]})
    archive = tmp_path / "cifar-10-python.tar.gz"
    _tar_folder(archive, folder, "cifar-10-batches-py")
    monkeypatch.setattr(tvd.CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", _md5(archive))
    monkeypatch.setattr(tvd.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(tvd.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": _md5(folder / "batches.meta")})
    return archive


def test_cifar10_through_torchvision_in_memory(cifar_archive, tmp_path):
    data = load_data(dataset="cifar10", size=32, data_root=tmp_path / "root")
    assert len(data.train) == 15 and len(data.val) == 4
    assert data.val.L.shape == (4, 1, 32, 32) and isinstance(data.val.L, torch.Tensor)
    assert (tmp_path / "root" / "cifar10" / "cifar-10-python.tar.gz").is_file()
    # HWC uint8 rows reach the pipeline unchanged at their native size (val: no resize).
    import torchvision.datasets as tvd

    raw = tvd.CIFAR10(str(tmp_path / "root" / "cifar10"), train=False).data
    assert np.array_equal(data.val.rgb.permute(0, 2, 3, 1).numpy(), raw)
    assert load_data(dataset="cifar10", size=64, data_root=tmp_path / "root").manifest["warnings"]


@pytest.fixture
def stl_archive(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    rng = np.random.default_rng(1)
    folder = tmp_path / "src" / "stl10_binary"
    folder.mkdir(parents=True)
    counts = {"train": 3, "unlabeled": 4, "test": 2}
    for split, n in counts.items():
        rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            np.ones(n, np.uint8).tofile(folder / f"{split}_y.bin")
    (folder / "class_names.txt").write_text("a\nb\n")
    archive = tmp_path / "stl10_binary.tar.gz"
    _tar_folder(archive, folder, "stl10_binary")
    monkeypatch.setattr(tvd.STL10, "url", archive.as_uri())
    monkeypatch.setattr(tvd.STL10, "tgz_md5", _md5(archive))
    monkeypatch.setattr(tvd.STL10, "train_list", [[f, _md5(folder / f)] for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")])
    monkeypatch.setattr(tvd.STL10, "test_list", [[f, _md5(folder / f)] for f in ("test_X.bin", "test_y.bin")])
    return archive


def test_stl10_streams_from_a_uint8_lab_cache_built_once(stl_archive, tmp_path, monkeypatch):
    from colorbench_datasets import cache as cache_mod

    data = load_data(dataset="stl10", size=96, data_root=tmp_path / "root")
    assert len(data.train) == 7 and len(data.val) == 2
    assert isinstance(data.train, cache_mod.MappedLabSplit)
    assert data.train.L[torch.tensor([6, 0])].shape == (2, 1, 108, 108)  # crop margin kept
    assert data.val.rgb[0:2].dtype == torch.uint8
    assert list((tmp_path / "root" / "stl10" / "lab-cache").glob("*/lab.u8"))
    # Second load: read from the cache, nothing decoded or converted again.
    monkeypatch.setattr(cache_mod, "prepare_image", lambda *a: pytest.fail("rebuilt the cache"))
    monkeypatch.setattr(cache_mod, "rgb_to_lab", lambda *a: pytest.fail("recomputed Lab"))
    again = load_data(dataset="stl10", size=96, data_root=tmp_path / "root")
    assert torch.equal(again.val.ab[0:2], data.val.ab[0:2])


def test_stl10_images_are_torchvisions_in_its_order_without_reading_them_all(stl_archive, tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    from colorbench_datasets import DATASETS

    sources = DATASETS["stl10"](data_root=tmp_path / "root", progress=False)
    root = tmp_path / "root" / "stl10"
    expected = {
        "stl10/train+unlabeled": tvd.STL10(str(root), split="train+unlabeled").data,
        "stl10/test": tvd.STL10(str(root), split="test").data,
    }
    for items, prefix in ((sources.train, "stl10/train+unlabeled"), (sources.val, "stl10/test")):
        assert [name for name, _ in items] == [f"{prefix}/{i:06d}" for i in range(len(expected[prefix]))]
        for (_, open_image), chw in zip(items, expected[prefix]):
            assert np.array_equal(np.asarray(open_image()), chw.transpose(1, 2, 0))
    # Listing the images reads none of them (torchvision's class reads and md5s every file).
    monkeypatch.setattr(tvd.STL10, "__init__", lambda *a, **k: pytest.fail("read through torchvision's STL10"))
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: pytest.fail("read a whole file"))
    assert len(DATASETS["stl10"](data_root=tmp_path / "root", progress=False).train) == 7


def test_a_truncated_stl10_binary_names_the_file_and_the_fix(stl_archive, tmp_path):
    from colorbench_datasets import DATASETS

    DATASETS["stl10"](data_root=tmp_path / "root", progress=False)
    binary = tmp_path / "root" / "stl10" / "stl10_binary" / "unlabeled_X.bin"
    binary.write_bytes(binary.read_bytes()[:1000])
    with pytest.raises(DataError, match="unlabeled_X.bin is missing or truncated; delete"):
        DATASETS["stl10"](data_root=tmp_path / "root", progress=False)


@pytest.fixture
def places_archives(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    server = tmp_path / "server"
    server.mkdir()
    devkit = tmp_path / "devkit"
    devkit.mkdir()
    (devkit / "categories_places365.txt").write_text("/a/abbey 0\n/b/beach 1\n")
    (devkit / "places365_train_standard.txt").write_text("/a/abbey/00000001.jpg 0\n/b/beach/00000002.jpg 1\n/b/beach/00000003.jpg 1\n")
    (devkit / "places365_val.txt").write_text("Places365_val_00000001.jpg 0\nPlaces365_val_00000002.jpg 1\n")
    with tarfile.open(server / "filelist_places365-standard.tar", "w") as tar:
        for f in devkit.iterdir():
            tar.add(f, arcname=f.name)
    train = tmp_path / "data_256"
    write_photos(train / "a" / "abbey", 1, size=64)[0].rename(train / "a" / "abbey" / "00000001.jpg")
    for i, p in enumerate(write_photos(train / "b" / "beach", 2, size=64, seed=3, prefix="x")):
        p.rename(train / "b" / "beach" / f"0000000{i + 2}.jpg")
    with tarfile.open(server / "train_256_places365standard.tar", "w") as tar:
        tar.add(train, arcname="data_256")
    val = tmp_path / "val_256"
    for i, p in enumerate(write_photos(val, 2, size=64, seed=5, prefix="v")):
        p.rename(val / f"Places365_val_0000000{i + 1}.jpg")
    with tarfile.open(server / "val_256.tar", "w") as tar:
        tar.add(val, arcname="val_256")
    monkeypatch.setattr(tvd.Places365, "_BASE_URL", server.as_uri() + "/")
    monkeypatch.setattr(tvd.Places365, "_DEVKIT_META", {"standard": ("filelist_places365-standard.tar", _md5(server / "filelist_places365-standard.tar"))})
    monkeypatch.setattr(tvd.Places365, "_IMAGES_META", {
        ("train-standard", True): ("train_256_places365standard.tar", _md5(server / "train_256_places365standard.tar")),
        ("val", True): ("val_256.tar", _md5(server / "val_256.tar")),
    })
    monkeypatch.setattr(tvd.Places365, "_CATEGORIES_META", ("categories_places365.txt", _md5(devkit / "categories_places365.txt")))
    monkeypatch.setattr(tvd.Places365, "_FILE_LIST_META", {
        "train-standard": ("places365_train_standard.txt", _md5(devkit / "places365_train_standard.txt")),
        "val": ("places365_val.txt", _md5(devkit / "places365_val.txt")),
    })
    return server


def test_places365_small_through_torchvision_and_the_cache(places_archives, tmp_path):
    data = load_data(dataset="places365", size=32, data_root=tmp_path / "root")
    assert data.train.names == ["data_256_standard/a/abbey/00000001.jpg", "data_256_standard/b/beach/00000002.jpg",
                                "data_256_standard/b/beach/00000003.jpg"]
    assert len(data.val) == 2 and data.val.L[0:2].shape == (2, 1, 32, 32)
    assert "uint8 Lab cache" in data.manifest["source"]


def test_bench_run_trains_and_scores_from_the_memory_mapped_cache(stl_archive, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, [
        "run", "--dataset", "stl10", "--data-root", str(tmp_path / "root"), "--losses", "l1,100*l1+gan",
        "--size", "96", "--width", "8", "--epochs", "1", "--batch-size", "4", "--out", str(out), "-q",
    ])
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["cache"].endswith("lab-cache") and config["data"]["train_images"] == 7
    metrics = (out / "metrics.csv").read_text()
    assert "100*l1+gan" in metrics and "nan" not in metrics.lower()


def test_loading_is_quiet_without_a_progress_wrapper_downloads_included(monkeypatch):
    from colorbench_datasets import DATASETS, DataError, load_data

    seen = {}

    def fake_dataset(**options):
        seen.update(options)
        raise DataError("stop here")

    monkeypatch.setitem(DATASETS, "fake", fake_dataset)
    with pytest.raises(DataError):
        load_data(dataset="fake")
    assert seen["progress"] is False
    with pytest.raises(DataError):
        load_data(dataset="fake", progress=lambda items, total: items)
    assert seen["progress"] is True
