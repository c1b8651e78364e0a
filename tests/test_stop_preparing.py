"""A stop signal while a run is being prepared (photos loading, gray being scored), and
`bench status` meanwhile: in a real `bench run` process, held at one point of its preparation
by a wrapper around one function, and sent a real SIGINT (Ctrl-C) or SIGTERM."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main

TINY = ["--size", "32", "--width", "8", "--steps", "4", "--batch-size", "4", "--losses", "l1", "-q",
        "--no-tensorboard", "--gallery-photos", "2"]

# Runs `bench run` with one function wrapped: when it is reached, a file says so and the
# process waits there (in time.sleep, as in a photo decoder: interruptible at once).
WRAPPER = """
import os, sys, time
from pathlib import Path
import bench.run.runner as runner
import bench.run.stages as stages
import bench.score.images as images
where, name = os.environ["HOLD_AT"].split(":")
module = {"stages": stages, "runner": runner, "images": images}[where]
real, after = getattr(module, name), name == "write_baseline_scores"  # held after its files are written
calls = []
def held(*args, **kwargs):
    result = real(*args, **kwargs) if after else None
    if not calls:  # the first call
        calls.append(1)
        Path(os.environ["HELD"]).touch()
        time.sleep(float(os.environ.get("HOLD_SECONDS", "300")))
    return result if after else real(*args, **kwargs)
setattr(module, name, held)
from bench.cli import main
sys.argv[0] = "bench"
main()
"""


def _start(args: list[str], hold_at: str, held: Path, seconds: float = 300) -> subprocess.Popen:
    env = dict(os.environ, HOLD_AT=hold_at, HELD=str(held), HOLD_SECONDS=str(seconds), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", WRAPPER, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(held: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not held.exists():
        if proc.poll() is not None:
            pytest.fail(f"bench run ended before reaching the point held:\n{proc.stderr.read()}")
        assert time.monotonic() < deadline, "bench run did not reach the point held"
        time.sleep(0.1)


def _resume_args(stderr: str) -> list[str]:
    line = stderr.split("Resume with:")[1].strip().splitlines()[0]
    words = shlex.split(line)
    assert words[0] == "bench" and words[1] == "run", line
    return words[1:]


@pytest.mark.parametrize("hold_at, signum, left", [
    ("stages:load_data", signal.SIGINT, "before anything was written"),
    ("runner:write_baseline_scores", signal.SIGTERM, "before training: the files it had written are removed"),
])
@pytest.mark.slow
def test_a_stop_while_preparing_a_new_run_leaves_nothing_and_says_how_to_resume(photo_dir, tmp_path, hold_at,
                                                                              signum, left):
    out = tmp_path / "r"
    held = tmp_path / "held"
    proc = _start(["run", "--data", str(photo_dir), "--out", str(out), *TINY], hold_at, held)
    try:
        _wait_for(held, proc)
        status = CliRunner().invoke(main, ["status", str(out)])
        assert status.exit_code == 0, status.output  # not refused for having no config.json yet
        assert "preparing (loading photos" in status.output and f"pid {proc.pid}" in status.output
        assert "since" in status.output and "bench run" in status.output
        if hold_at.endswith("write_baseline_scores"):
            assert (out / "per_image.csv.gz").is_file()  # it had written files
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr
    words = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert f"Stopped by {words}; nothing is lost (stopped while preparing, {left}). Resume with:" in stderr, stderr
    assert "Aborted" not in stderr and "Traceback" not in stderr
    assert not out.exists() and not (tmp_path / ".r.lock").exists()  # no folder, no lock file left
    # the printed command starts the run afresh and finishes it
    res = CliRunner().invoke(main, _resume_args(stderr))
    assert res.exit_code == 0, res.output
    assert (out / "cells" / "l1" / "seed0" / "metrics.json").is_file()
    assert sorted(p.name for p in (out / "gallery" / "gray").iterdir()) == ["0.full.jpg", "0.webp", "1.full.jpg",
                                                                          "1.webp"]


@pytest.mark.slow
def test_a_stop_while_preparing_to_train_a_run_further_keeps_it_resumable(photo_dir, tmp_path):
    """A larger --steps reopens the finished cells (state.pt back as their checkpoint) before
    gray is scored: stopped there, `bench status` says they wait to be trained further, and
    the printed command does it."""
    out = tmp_path / "r"
    args = ["run", "--data", str(photo_dir), "--out", str(out), *TINY, "--losses", "l1,mse"]
    assert CliRunner().invoke(main, args).exit_code == 0
    held = tmp_path / "held"
    proc = _start([*args, "--steps", "8"], "runner:write_baseline_scores", held)
    try:
        _wait_for(held, proc)
        status = CliRunner().invoke(main, ["status", str(out)])
        assert status.exit_code == 0, status.output
        assert f"`bench run` pid {proc.pid}" in status.output and "is preparing it again" in status.output
        rows = [line for line in status.output.splitlines() if line.startswith(("l1 ", "mse "))]
        assert len(rows) == 2 and all("pending" in r and "trained for 4 steps; waiting to be trained further" in r
                                      for r in rows), status.output
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Stopped by Ctrl-C; nothing is lost (stopped while preparing, before training; what it had is kept)" in stderr
    status = CliRunner().invoke(main, ["status", str(out)]).output
    rows = [line for line in status.splitlines() if line.startswith(("l1 ", "mse "))]
    assert all("stopped" in r and "waiting to be trained further (a larger --steps)" in r for r in rows), status
    res = CliRunner().invoke(main, _resume_args(stderr))
    assert res.exit_code == 0, res.output
    for cell in ("l1", "mse"):
        record = (out / "cells" / cell / "seed0" / "metrics.json").read_text()
        assert '"steps": 8' in record
    assert "2 done" in CliRunner().invoke(main, ["status", str(out)]).output


@pytest.mark.slow
def test_status_refuses_a_folder_nobody_prepares(tmp_path):
    res = CliRunner().invoke(main, ["status", str(tmp_path / "nothing")])
    assert res.exit_code != 0 and "does not exist: it is not a `bench run` folder" in res.output
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["status", str(tmp_path / "empty")])
    assert res.exit_code != 0 and "has no config.json" in res.output


@pytest.mark.slow
def test_overwrite_stopped_before_its_discard_leaves_the_earlier_run(photo_dir, tmp_path):
    out = tmp_path / "r"
    args = ["run", "--data", str(photo_dir), "--out", str(out), *TINY]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    held = tmp_path / "held"
    proc = _start([*args, "--overwrite", "--width", "16"], "stages:load_data", held)
    try:
        _wait_for(held, proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "the earlier run in it is untouched: add --overwrite to discard it" in stderr, stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    assert Path(out / "config.json").is_file()


@pytest.mark.slow
def test_a_stop_while_the_run_waits_for_its_gallery_images_says_the_rerun_writes_them(photo_dir, tmp_path):
    """The cells are trained; the run waits for the gallery's images (the thread held in its
    first grayscale enlargement for 15 s): Ctrl-C stops the thread after its photo, the
    resume line is printed, and the rerun writes the images, training nothing."""
    out = tmp_path / "r"
    held = tmp_path / "held"
    args = ["run", "--data", str(photo_dir), "--out", str(out), *TINY]
    proc = _start(args, "images:gray_full", held, seconds=15)
    record = out / "cells" / "l1" / "seed0" / "metrics.json"
    try:
        _wait_for(held, proc)
        deadline = time.monotonic() + 300
        while not record.is_file():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        time.sleep(1)  # the cell's record is written: the run is on to waiting for the images
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Stopped by Ctrl-C; nothing is lost (the gallery's remaining images are written when rerun)" in stderr
    # the thread finished the photos it had begun (files whole, no temp file) and stopped there
    assert len(list((out / "gallery" / "gray").iterdir())) == 4
    assert not record.parent.joinpath("gallery").is_dir() or not any(record.parent.joinpath("gallery").iterdir())
    res = CliRunner().invoke(main, _resume_args(stderr))
    assert res.exit_code == 0, res.output
    assert len(list((out / "gallery" / "gray").iterdir())) == 4 and len(list(record.parent.glob("gallery/*"))) == 4
