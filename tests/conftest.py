"""Shared fixtures: no network, a private torch hub cache, small photos made on the fly, one
trained run for the whole session, and the markers ``slow`` and ``needs`` (pyproject.toml)."""
from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def need(module: str):
    """The optional extra ``module`` (``pip install -e '.[test]'`` brings them all), imported;
    where it is missing the test is skipped with the reason, except in CI (CI set, as .ci/run
    does), which installs the extras: there a missing one fails the test."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        message = f"needs the optional package {module!r} ({e}): pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def pytest_runtest_setup(item):
    """``@pytest.mark.needs("module", ...)``: ``need`` each module before the test starts."""
    for mark in item.iter_markers("needs"):
        for module in mark.args:
            need(module)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    # Tests never touch the network or the user's weight cache.
    monkeypatch.setenv("COLORBENCH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    import torch

    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    from losses.lpips_loss import lpips_network
    from losses.perceptual import vgg16_features

    vgg16_features.cache_clear()
    lpips_network.cache_clear()


def place_in_cache(key: str, content, trusted: bool = True) -> "Path":
    """Put a weights file where Colorbench looks for ``key`` (torch hub's checkpoint cache
    under the test's TORCH_HOME): a state dict is saved with torch, bytes written as is.

    The stand-in cannot have the real file's SHA-256, so with ``trusted`` its verdict is
    recorded as a pass (as for a real file after its first use); ``trusted=False`` leaves
    it to be hashed, and refused."""
    import json

    import torch

    from models.pretrained import VERDICTS, cached_path, known_weights

    weights = known_weights()[key]
    path = cached_path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    if trusted:
        stat = path.stat()
        verdicts_path = path.parent / VERDICTS
        verdicts = json.loads(verdicts_path.read_text()) if verdicts_path.is_file() else {}
        verdicts[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                               "sha256": weights.hash_prefix.ljust(64, "0")}
        verdicts_path.write_text(json.dumps(verdicts))
    return path


def real_photos() -> list[np.ndarray]:
    """Colour photos bundled with scikit-image (no network)."""
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), left, right]


def write_photos(folder, count: int, size: int = 48, seed: int = 0, prefix: str = "img") -> list:
    """``count`` small colour JPEG crops of the bundled photos in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    photos = real_photos()
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        y = rng.integers(0, photo.shape[0] - 2 * size)
        x = rng.integers(0, photo.shape[1] - 2 * size)
        crop = Image.fromarray(photo[y : y + 2 * size, x : x + 2 * size]).resize((size, size), Image.BICUBIC)
        path = folder / f"{prefix}{i:03d}.jpg"
        crop.save(path, quality=95)
        paths.append(path)
    return paths


def write_photo_folder(root) -> Path:
    """``root/photos`` with train/ (16) and val/ (6) photos: the layout most tests train on."""
    write_photos(root / "photos" / "train", 16, seed=1, prefix="tr")
    write_photos(root / "photos" / "val", 6, seed=2, prefix="va")
    return root / "photos"


@pytest.fixture
def photo_dir(tmp_path):
    """A folder with train/ (16) and val/ (6) photos."""
    return write_photo_folder(tmp_path)


@contextlib.contextmanager
def offline_env(root):
    """conftest's no-network, private-cache rules for a module-scoped fixture (the autouse
    ``_offline`` is function-scoped): a torch hub cache under ``root``."""
    import torch

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLORBENCH_OFFLINE", "1")
        mp.setenv("TORCH_HOME", str(root / "torch_home"))
        mp.setattr(torch.hub, "_hub_dir", None, raising=False)
        yield mp


@contextlib.contextmanager
def logged_warnings(match: str | None = None):
    """The warnings Colorbench logs inside the block (its "colorbench" logger), as messages;
    with ``match``, at least one must match it (a regular expression, as pytest.warns)."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    logger, handler = logging.getLogger("colorbench"), Keep()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
    if match is not None:
        assert any(re.search(match, m) for m in messages), f"no warning matched {match!r}: {messages}"


# ---------------------------------------------------------------- one trained run per session

# The finished run most read-only tests need: l1 and mse, seed 0, 16 train / 6 val photos
# (write_photo_folder). A test that reruns `bench run` on it passes these same options.
TRAINED_RUN_ARGS = ("--losses", "l1,mse", "--size", "32", "--width", "4", "--epochs", "1", "--batch-size", "4", "-q")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """(photos, run): one finished ``bench run`` (TRAINED_RUN_ARGS) trained once for the whole
    session. Read it, never change it: a test that changes files takes ``copied_run``."""
    from click.testing import CliRunner

    from bench.cli import main

    root = tmp_path_factory.mktemp("trained_run")
    photos = write_photo_folder(root)
    with offline_env(root):
        res = CliRunner().invoke(main, ["run", "--data", str(photos), "--out", str(root / "run"), *TRAINED_RUN_ARGS])
    assert res.exit_code == 0, res.output
    return photos, root / "run"


def copy_run_folder(photos: Path, run: Path, dest: Path) -> tuple[Path, Path]:
    """A private copy of a run folder and of its photos under ``dest`` (shutil.copytree), the
    copy's config.json pointing at the copied photos, as if it had been made from them."""
    shutil.copytree(photos, dest / "photos")
    shutil.copytree(run, dest / "run")
    config_path = dest / "run" / "config.json"
    config = json.loads(config_path.read_text())
    config["options"]["data"] = str(dest / "photos")
    config_path.write_text(json.dumps(config))
    return dest / "photos", dest / "run"


@pytest.fixture
def copied_run(trained_run, tmp_path) -> tuple[Path, Path]:
    """(photos, run): the session's trained run and its photos copied into this test's tmp_path,
    free to change."""
    return copy_run_folder(*trained_run, tmp_path)
