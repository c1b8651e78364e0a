"""The gallery's image files (bench/score/images.py): written off the path before training,
by a low-priority thread while the cells train; completed by a rerun where they are missing;
and the fast grayscale enlargement, checked against `bench colorize`'s."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from bench.score import images

TINY = ["--size", "32", "--width", "8", "--steps", "4", "--batch-size", "4", "--losses", "l1,mse", "-q",
        "--no-tensorboard"]


def test_the_images_are_written_while_the_cells_train_and_none_before(photo_dir, tmp_path, monkeypatch):
    import bench.run.runner as runner

    writes, prepared = [], []
    write = images.atomic_write_bytes

    def recording(path, data):
        writes.append((threading.current_thread().name, path))
        write(path, data)

    prepare = runner.prepare_run

    def preparing(*args, **kwargs):
        run = prepare(*args, **kwargs)
        prepared.append(len(writes))  # the first cell trains right after this
        return run

    monkeypatch.setattr(images, "atomic_write_bytes", recording)
    monkeypatch.setattr(runner, "prepare_run", preparing)
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    assert prepared == [0]  # nothing of the gallery is written before training starts
    assert {name for name, _ in writes} == {"colorbench-gallery"}  # all by the background thread
    # 6 val photos x (as scored + enlarged) x (gray, truth, l1, mse), each once
    assert len(writes) == len({p for _, p in writes}) == 6 * 2 * 4
    for folder in ("gallery/gray", "gallery/ground-truth", "cells/l1/seed0/gallery", "cells/mse/seed0/gallery"):
        assert len(list((out / folder).iterdir())) == 12, folder


@pytest.mark.slow
def test_a_rerun_writes_the_images_a_stopped_run_left_out_and_only_those(photo_dir, tmp_path):
    out = tmp_path / "r"
    args = ["run", "--data", str(photo_dir), "--out", str(out), *TINY]
    assert CliRunner().invoke(main, args).exit_code == 0
    lost = [out / "gallery" / "gray" / "3.webp", out / "cells" / "l1" / "seed0" / "gallery" / "2.full.jpg"]
    for path in lost:
        path.unlink()
    kept = [p for p in out.rglob("*") if p.is_file() and "gallery" in p.relative_to(out).parts]
    before = {p: p.stat().st_mtime_ns for p in kept}
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert all(path.is_file() for path in lost)
    assert {p: p.stat().st_mtime_ns for p in kept} == before  # nothing else rewritten
    assert len(list((out / "cells" / "mse" / "seed0" / "gallery").iterdir())) == 12


def test_a_stopped_writer_ends_within_its_chunk_and_an_error_ends_only_its_job(caplog):
    writer = images.BackgroundWriter()
    done = []

    def endless(stop):
        while not stop():
            time.sleep(0.01)
        done.append("endless")

    writer.submit("broken", lambda stop: 1 / 0)
    writer.submit("fine", lambda stop: done.append("fine"))
    writer.submit("endless", endless)
    writer.submit("never", lambda stop: done.append("never"))
    writer.start()
    deadline = time.monotonic() + 30
    while "fine" not in done and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    writer.cancel()
    assert time.monotonic() - started < 5
    assert done == ["fine", "endless"] and writer.failed == ["broken"]  # "never" is skipped once stopped
    assert "The gallery's images of broken could not all be written (ZeroDivisionError" in caplog.text


def test_the_grayscale_enlargement_matches_colorizes_to_one_level():
    from bench.colorize import gray_image
    from conftest import real_photos

    for photo in real_photos()[:3]:
        img = Image.fromarray(photo)
        fast = np.asarray(images.gray_full(img)).astype(int)
        slow = np.asarray(gray_image(img)).astype(int)
        assert fast.shape == slow.shape[:2] and np.abs(slow - fast[..., None]).max() <= 1


@pytest.mark.parametrize("indices, runs", [
    ([], []), ([0, 1, 2, 3, 4], [(0, 2), (2, 4), (4, 5)]), ([1, 2, 5, 6, 7, 9], [(1, 3), (5, 7), (7, 8), (9, 10)]),
])
def test_missing_photos_are_written_in_runs_of_consecutive_indices(indices, runs):
    assert [(s.start, s.stop) for s in images._runs(indices, 2)] == runs
