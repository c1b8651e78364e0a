"""Watching a run: the val scores along training (curve.csv), TensorBoard's event files, the
progress record `bench status` reads, and the report's curve figure and reading."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.config.options import WatchSettings
from bench.report.curves import still_improving
from bench.run import watch

TINY = ["--size", "32", "--width", "8", "--steps", "16", "--batch-size", "4", "--losses", "l1,gan", "-q"]


def _run(photos, out, *extra):
    res = CliRunner().invoke(main, ["run", "--data", str(photos), "--out", str(out), *TINY, *extra])
    assert res.exit_code == 0, res.output
    return res


def _events(folder):
    """TensorBoard's reading of the event files under ``folder`` (tests that call it are marked
    ``needs("tensorboard")``: the optional extra)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    from conftest import write_photo_folder

    root = tmp_path_factory.mktemp("watch")
    photos = write_photo_folder(root)
    _run(photos, root / "watched")
    _run(photos, root / "unwatched", "--eval-every", "0", "--no-tensorboard")
    return photos, root / "watched", root / "unwatched"


@pytest.mark.slow
def test_scoring_along_training_changes_no_number(watched):
    _, on, off = watched
    assert (on / "metrics.csv").read_bytes() == (off / "metrics.csv").read_bytes()
    for cell in ("l1", "gan"):
        a, b = on / "cells" / cell / "seed0", off / "cells" / cell / "seed0"
        assert (a / "per_image.csv.gz").read_bytes() == (b / "per_image.csv.gz").read_bytes()
        losses = [pd.read_csv(c / "train_log.csv").drop(columns="seconds") for c in (a, b)]
        pd.testing.assert_frame_equal(*losses)  # the same losses, step by step
        assert not (b / "curve.csv").exists()
    assert not (off / "tensorboard").exists()


@pytest.mark.slow
def test_curve_is_scored_about_eight_times_and_ends_at_the_final_scores(watched):
    _, on, _ = watched
    cell = on / "cells" / "gan" / "seed0"
    curve = pd.read_csv(cell / "curve.csv")
    every = WatchSettings().interval(16)
    assert every == 2
    assert sorted(curve.step.unique()) == list(range(every, 17, every))
    final = json.loads((cell / "metrics.json").read_text())["metrics"]
    last = curve[curve.step == 16].set_index("metric")["value"]
    assert set(last.index) == {m for m, v in final.items() if v is not None and m not in ("fid", "kid")}
    for metric, value in last.items():
        assert value == pytest.approx(final[metric], rel=1e-12)
    assert curve.groupby("step").size().nunique() == 1  # every evaluation has every metric
    assert not (cell / "progress.json").exists()  # a finished cell's record says where it stands


@pytest.mark.needs("tensorboard")
@pytest.mark.slow
def test_tensorboard_has_every_term_metric_and_image_once_per_step(watched):
    _, on, _ = watched
    acc = _events(on / "tensorboard" / "gan" / "seed0")
    tags = acc.Tags()
    assert {"loss/gan", "loss/total", "loss/d_loss"} <= set(tags["scalars"])
    curve = pd.read_csv(on / "cells" / "gan" / "seed0" / "curve.csv")
    for metric in curve.metric.unique():
        steps = [e.step for e in acc.Scalars(f"val/{metric}")]
        assert steps == sorted(curve.step.unique())
    assert [e.step for e in acc.Scalars("loss/total")] == list(range(1, 17))
    images = acc.Images(tags["images"][0])
    assert [e.step for e in images] == sorted(curve.step.unique())
    assert images[0].width == 3 * 32 + 4 * 2  # input | prediction | truth, padded


def test_without_the_tensorboard_package_one_line_says_how_to_get_it(photo_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(watch, "SummaryWriter", None)
    res = _run(photo_dir, tmp_path / "r", "--steps", "2", "--losses", "l1")
    # what the command printed: the CLI logs through its own handler and does not propagate, so
    # caplog missed the line where this test ran first in its process (`-m "not slow"`)
    lines = [line for line in res.output.splitlines() if "TensorBoard" in line]
    assert len(lines) == 1 and "pip install" in lines[0]
    assert not (tmp_path / "r" / "tensorboard").exists()
    assert (tmp_path / "r" / "cells" / "l1" / "seed0" / "curve.csv").is_file()  # the curve needs no TensorBoard


@pytest.mark.slow
def test_report_draws_the_curves(watched, tmp_path):
    _, on, _ = watched
    res = CliRunner().invoke(main, ["report", str(on), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "![curves](fig_curves.png)" in text
    assert (tmp_path / "rep" / "fig_curves.png").stat().st_size > 10_000


def test_reading_says_what_was_still_improving_and_what_peaked():
    rows = []
    for step, (de00, psnr) in enumerate([(20, 15), (18, 16), (17, 18), (16, 17), (13, 16)], start=1):
        rows += [{"row": "gan", "seed": 0, "step": step * 10, "metric": "de00", "value": de00},
                 {"row": "gan", "seed": 0, "step": step * 10, "metric": "psnr", "value": psnr}]
    rows += [{"row": "l1", "seed": 0, "step": s * 10, "metric": "de00", "value": 10.0} for s in range(1, 6)]
    said = still_improving(pd.DataFrame(rows), ["de00", "psnr"])
    # de00 at step 30 (the last at or before 3/4 of 50) is 17, at the end 13: 24 % lower
    assert said[0] == ("`gan`'s de00 fell 24% over its last quarter of training (step 30: 17, end: 13): "
                       "it had not converged.")
    assert said[1] == "`gan`'s psnr was best at step 30 (18) and ended 11% worse (16)."
    assert len(said) == 2  # l1's flat curve says nothing


@pytest.mark.needs("tensorboard")
def test_a_resumed_cell_replaces_what_was_logged_after_its_checkpoint(tmp_path):
    """A process killed at step 10 whose last checkpoint is at step 6: the rerun logs steps 7-10
    (and the evaluation at 8) again, and TensorBoard shows each step once, the rerun's value."""
    from types import SimpleNamespace

    import torch

    from bench.rundir.layout import CellFolder
    from bench.score.scorer import Scorer

    scorer = Scorer(torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    G = torch.nn.Conv2d(1, 2, 1)
    cell_dir = CellFolder(tmp_path / "cells" / "l1" / "seed0")
    cell_dir.path.mkdir(parents=True)

    def attempt(start: int, stop: int, value: float):
        state = SimpleNamespace(step=start, log=[{"step": i, "l1": value, "total": value} for i in range(start)],
                                terms=[("l1", 1.0, None)], D=None)
        monitor = watch.CellMonitor(cell_dir, scorer, WatchSettings(eval_every=4), tmp_path / "tb")
        monitor.started(state, 12)
        for step in range(start + 1, stop + 1):
            monitor.logged(state, [{"step": step - 1, "l1": value, "total": value}])
            if step % 4 == 0:
                monitor.evaluated([], step, {"psnr": value}, G)
        monitor.close()

    attempt(0, 10, 1.0)  # killed after step 10; its checkpoint held step 6
    attempt(6, 12, 2.0)
    acc = _events(tmp_path / "tb")
    total = acc.Scalars("loss/total")
    assert [e.step for e in total] == list(range(1, 13))
    assert [e.value for e in total] == [1.0] * 6 + [2.0] * 6
    assert [(e.step, e.value) for e in acc.Scalars("val/psnr")] == [(4, 1.0), (8, 2.0), (12, 2.0)]


CONTINUE = ["--size", "32", "--width", "8", "--batch-size", "4", "--losses", "l1,gan", "-q", "--no-tensorboard",
            "--gallery-photos", "0"]


@pytest.mark.slow
def test_a_larger_steps_trains_a_finished_run_further_to_the_same_numbers(photo_dir, tmp_path):
    runner = CliRunner()
    further, fresh = tmp_path / "further", tmp_path / "fresh"
    said = []
    for out, steps in ((further, 8), (further, 16), (fresh, 16)):
        res = runner.invoke(main, ["run", "--data", str(photo_dir), "--out", str(out), "--steps", str(steps), *CONTINUE])
        assert res.exit_code == 0, res.output
        said.append(res.output)
    assert "Training 2 finished cell(s) further, from step 8 to 16" in said[1]  # what the command printed
    assert (further / "metrics.csv").read_bytes() == (fresh / "metrics.csv").read_bytes()
    for cell in ("l1", "gan"):
        a, b = further / "cells" / cell / "seed0", fresh / "cells" / cell / "seed0"
        assert (a / "per_image.csv.gz").read_bytes() == (b / "per_image.csv.gz").read_bytes()
        pd.testing.assert_frame_equal(*[pd.read_csv(c / "train_log.csv").drop(columns="seconds") for c in (a, b)])
        # the curve extends: every 1 step up to 8 (8 steps, about 8 evaluations), then every 2 up to 16
        curve, whole = pd.read_csv(a / "curve.csv"), pd.read_csv(b / "curve.csv")
        assert sorted(curve.step.unique()) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16]
        shared = curve.merge(whole, on=["step", "metric"])
        assert len(shared) == len(whole) and (shared.value_x - shared.value_y).abs().max() < 1e-9


@pytest.mark.slow
def test_a_run_is_not_trained_back_and_a_cell_without_its_state_is_named(photo_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "r"
    args = ["run", "--data", str(photo_dir), "--out", str(out), *CONTINUE]
    assert runner.invoke(main, [*args, "--steps", "8"]).exit_code == 0
    res = runner.invoke(main, [*args, "--steps", "4"])
    assert res.exit_code != 0 and "--steps 4 cannot untrain it" in res.output
    (out / "cells" / "gan" / "seed0" / "state.pt").unlink()
    before = (out / "metrics.csv").read_bytes()
    res = runner.invoke(main, [*args, "--steps", "12"])
    assert res.exit_code != 0 and "gan seed0 kept no last training state" in res.output and "state.pt" in res.output
    assert (out / "metrics.csv").read_bytes() == before  # refused before anything was written
    assert (out / "cells" / "l1" / "seed0" / "metrics.json").is_file()


@pytest.mark.slow
def test_status_shows_a_training_cells_step_rate_time_left_and_losses(photo_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    args = [sys.executable, "-c", "from bench.cli import main; main()", "run", "--data", str(photo_dir), "--out",
            str(out), "--steps", "100000", *CONTINUE, "--losses", "l1"]
    proc = subprocess.Popen(args, env=dict(os.environ, COLORBENCH_OFFLINE="1"), stderr=subprocess.PIPE, text=True)
    progress = out / "cells" / "l1" / "seed0" / "progress.json"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (progress.is_file() and json.loads(progress.read_text())["step"] > 8):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        res = CliRunner().invoke(main, ["status", str(out)])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert res.exit_code == 0, res.output
    line = next(row for row in res.output.splitlines() if row.startswith("l1"))
    assert "running" in line
    step = int(line.split("step ")[1].split("/")[0])
    assert step > 8 and "/100000 (0%)" in line and "steps/s, about" in line and "left; l1 " in line
    # stopped mid-training: where it stopped, and that it resumes (not "stopped while scoring")
    line = next(row for row in CliRunner().invoke(main, ["status", str(out)]).output.splitlines() if row.startswith("l1"))
    assert "stopped" in line and "of 100000 (0%); its checkpoint is kept; rerun `bench run` to resume it" in line, line
    assert "scor" not in line
    assert int(line.split("stopped at step ")[1].split(" ")[0]) >= step


@pytest.mark.slow
def test_status_says_which_cells_wait_to_be_trained_further(photo_dir, tmp_path):
    """A larger --steps: while the run trains its first cell further, the other finished cell
    waits for it (pending); after a stop, it is still to be trained further (not "stopped
    while scoring", which a kept generator without scores used to read as)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    args = ["run", "--data", str(photo_dir), "--out", str(out), *CONTINUE]
    assert CliRunner().invoke(main, [*args, "--steps", "8"]).exit_code == 0
    proc = subprocess.Popen([sys.executable, "-c", "from bench.cli import main; main()", *args, "--steps", "100000"],
                            env=dict(os.environ, COLORBENCH_OFFLINE="1"), stderr=subprocess.PIPE, text=True)
    progress = out / "cells" / "l1" / "seed0" / "progress.json"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (progress.is_file() and json.loads(progress.read_text())["step"] > 8):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        during = CliRunner().invoke(main, ["status", str(out)]).output
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    rows = {row.split()[0]: row for row in during.splitlines() if row.startswith(("l1 ", "gan "))}
    assert "running" in rows["l1"] and "/100000" in rows["l1"]
    assert "pending" in rows["gan"] and "trained for 8 steps; waiting to be trained further to 100000 by `bench run` pid " \
        f"{proc.pid}" in rows["gan"], during
    assert f"`bench run` pid {proc.pid}" in during and "is running it" in during
    after = CliRunner().invoke(main, ["status", str(out)]).output
    rows = {row.split()[0]: row for row in after.splitlines() if row.startswith(("l1 ", "gan "))}
    assert "stopped" in rows["l1"] and "of 100000 (0%); its checkpoint is kept" in rows["l1"]
    assert "stopped" in rows["gan"] and "trained for 8 steps, waiting to be trained further to 100000" in rows["gan"]
    assert "scor" not in rows["gan"] and "2 stopped" in after


def test_no_keep_state_leaves_no_state(photo_dir, tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--out", str(out), "--steps", "4",
                                    *CONTINUE, "--losses", "l1", "--no-keep-state"])
    assert res.exit_code == 0, res.output
    cell = out / "cells" / "l1" / "seed0"
    assert (cell / "metrics.json").is_file() and not (cell / "state.pt").exists() and not (cell / "checkpoint.pt").exists()
