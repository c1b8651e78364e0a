"""Nothing lost: a run killed (SIGKILL) or stopped (Ctrl-C) mid-cell resumes to exactly the
numbers of an uninterrupted run."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from conftest import need
from losses import LOSSES, register_loss

# --checkpoint-seconds 0: the state is saved after every pass over the photos, so there is
# a checkpoint to interrupt within a second.
LONG = ["--losses", "l1,100*l1+gan", "--size", "32", "--width", "8", "--epochs", "12", "--batch-size", "4", "-q",
        "--checkpoint-seconds", "0"]


def _bench(*args) -> list[str]:
    return [sys.executable, "-c", "from bench.cli import main; main()", *args]


def _wait_for_checkpoint(proc, cell: Path, timeout: float = 900) -> None:
    """Until the cell has saved its state after some steps (and is still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ckpt = cell / "checkpoint.pt"
        if ckpt.is_file():
            try:
                if torch.load(ckpt, weights_only=True)["step"] >= 1:
                    return
            except Exception:
                pass  # being replaced right now; atomic rename means the next look is whole
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run over the same photos."""
    from conftest import write_photo_folder

    root = tmp_path_factory.mktemp("resume")
    photos = write_photo_folder(root)
    out = root / "reference"
    res = CliRunner().invoke(main, ["run", "--data", str(photos), "--out", str(out), *LONG])
    assert res.exit_code == 0, res.output
    return photos, pd.read_csv(out / "metrics.csv"), out


def _env():
    return dict(os.environ, COLORBENCH_OFFLINE="1", PYTHONUNBUFFERED="1")


def _interrupt(photos: Path, out: Path, cell_name: str, sig: int):
    """Start the long run, send ``sig`` once ``cell_name`` has a checkpoint; returns the
    command (to rerun), the process, its cell folder and its stderr."""
    args = _bench("run", "--data", str(photos), "--out", str(out), *LONG)
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cell = out / "cells" / cell_name / "seed0"
    _wait_for_checkpoint(proc, cell)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return args, proc, cell, err


def _rerun_matches(args, out: Path, expected: pd.DataFrame) -> str:
    done = subprocess.run(args, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"), expected)
    return done.stderr


@pytest.mark.slow
def test_sigkill_mid_cell_then_rerun_gives_identical_metrics(reference, tmp_path):
    photos, expected, reference_out = reference
    out = tmp_path / "killed"
    args, _, cell, _ = _interrupt(photos, out, "100xl1+gan", signal.SIGKILL)
    assert not (cell / "metrics.json").exists()  # it really died mid-cell
    log = _rerun_matches(args, out, expected)
    assert "already done, kept" in log and "resuming from its checkpoint" in log
    # the curve of the killed cell is the uninterrupted one's, and TensorBoard shows each step once
    for name in ("l1", "100xl1+gan"):
        curve = pd.read_csv(out / "cells" / name / "seed0" / "curve.csv")
        pd.testing.assert_frame_equal(curve, pd.read_csv(reference_out / "cells" / name / "seed0" / "curve.csv"))
    # TensorBoard (an optional extra) shows each step once: checked where it is installed
    EventAccumulator = need("tensorboard.backend.event_processing.event_accumulator").EventAccumulator
    events = EventAccumulator(str(out / "tensorboard" / "100xl1+gan" / "seed0"), size_guidance={"scalars": 0})
    events.Reload()
    steps = len(pd.read_csv(cell / "train_log.csv"))
    assert [e.step for e in events.Scalars("loss/total")] == list(range(1, steps + 1))
    assert [e.step for e in events.Scalars("val/psnr")] == sorted(curve.step.unique())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; kill, systemd, a container stop
@pytest.mark.slow
def test_a_stop_signal_saves_prints_the_resume_command_and_resumes_exactly(reference, tmp_path, sig):
    photos, expected, _ = reference
    out = tmp_path / "stopped"
    args, proc, cell, err = _interrupt(photos, out, "l1", sig)
    assert proc.returncode == 128 + sig, err
    assert "Resume with:" in err and f"--out {out}" in err
    assert ("Ctrl-C" if sig == signal.SIGINT else "SIGTERM") in err
    from bench.rundir.lock import holder

    assert holder(out) is None and holder(cell) is None  # nothing left holding the run
    state = torch.load(cell / "checkpoint.pt", weights_only=True)
    assert len(state["log"]) == state["step"] >= 1  # saved at a step boundary, every step logged
    _rerun_matches(args, out, expected)


def test_diverged_cell_is_marked_and_the_grid_goes_on(photo_dir, tmp_path):
    calls = {"n": 0}

    @register_loss("test_nan_after_3", "returns NaN from the 4th step on")
    def _nan(options):
        class Nan(torch.nn.Module):
            def forward(self, L, fake, real):
                calls["n"] += 1
                loss = (fake - real).abs().mean()
                return loss * math.nan if calls["n"] > 3 else loss

        return Nan()

    try:
        out = tmp_path / "r"
        res = CliRunner().invoke(
            main, ["run", "--data", str(photo_dir), "--losses", "test_nan_after_3,l1", "--out", str(out),
                   "--size", "32", "--width", "8", "--epochs", "2", "--batch-size", "4", "-q"],
        )
        assert res.exit_code == 0, res.output
    finally:
        LOSSES.pop("test_nan_after_3")
    frame = pd.read_csv(out / "metrics.csv", dtype={"note": str})
    bad = frame[frame.combination == "test_nan_after_3"]
    assert bad["value"].isna().all() and (bad["note"] == "diverged at step 3").all()
    l1 = frame[(frame.combination == "l1") & ~frame.metric.isin(["lpips", "fid", "kid"])]  # no weights offline
    assert len(l1) and l1["value"].notna().all()
    record = json.loads((out / "cells" / "test_nan_after_3" / "seed0" / "metrics.json").read_text())
    assert record["status"] == "diverged" and record["diverged_at"] == 3
