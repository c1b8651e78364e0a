"""Nothing lost, nothing mixed: run folders, resumes and outputs under bad input and faults
(docs/robustness.md, "Run folders"). Each test is one row of that table or a variant of it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from conftest import TRAINED_RUN_ARGS, logged_warnings, write_photos

TINY = ["--size", "32", "--width", "4", "--epochs", "1", "--batch-size", "4", "-q"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_args(photos, out, losses="l1", *extra):
    return ["run", "--data", photos, "--losses", losses, "--out", out, *TINY, *extra]


# The finished run these tests read is conftest's session run (``trained_run``: l1 and mse,
# seed 0); tests that change it take a private copy of it and of its photos (``copied_run``).

def test_the_session_run_is_the_one_run_args_reruns(copied_run):
    """Reruns on the (copied) session run pass ``run_args(photos, out, "l1,mse")``: its options."""
    photos, run = copied_run
    assert sorted(TRAINED_RUN_ARGS) == sorted(["--losses", "l1,mse", *TINY])
    res = cli(*run_args(photos, run, "l1,mse"))
    assert res.exit_code == 0 and res.output.count("already done, kept") == 2, res.output


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- 1. colorize never overwrites

def _album(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / "p0.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(folder / "p1.jpg")
    return folder


def test_colorize_into_the_input_folder_never_replaces_an_input(trained_run, tmp_path):
    _, run = trained_run
    album = _album(tmp_path / "album")
    before = snapshot(album)
    for extra in ([], ["--overwrite"]):
        res = cli("colorize", "--run", run, "--loss", "l1", album, "--out", album, *extra)
        assert res.exit_code != 0 and "would replace the input photo" in res.output and "p0.png" in res.output
        assert "Traceback" not in res.output
    assert snapshot(album) == before  # nothing written, not even p1.png


def test_colorize_refuses_existing_outputs_unless_overwrite(trained_run, tmp_path):
    _, run = trained_run
    album, out = _album(tmp_path / "album"), tmp_path / "out"
    out.mkdir()
    (out / "p0.png").write_bytes(b"someone else's file")
    res = cli("colorize", "--run", run, "--loss", "l1", album, "--out", out)
    assert res.exit_code != 0 and "1 output file(s) already exist" in res.output and "--overwrite" in res.output
    assert (out / "p0.png").read_bytes() == b"someone else's file" and not (out / "p1.png").exists()
    res = cli("colorize", "--run", run, "--loss", "l1", album, "--out", out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert Image.open(out / "p0.png").size == (50, 40) and (out / "p1.png").is_file()


def test_colorize_sees_through_links_and_does_not_walk_its_own_out(tmp_path):
    from bench.colorize import ColorizeError, plan_jobs

    album = _album(tmp_path / "album")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(album / "p0.png", out / "p0.png")  # the output name is a link to an input
    with pytest.raises(ColorizeError, match="would replace the input photo"):
        plan_jobs([album], out, overwrite=True)
    os.unlink(out / "p0.png")
    os.link(album / "p0.png", out / "p0.png")  # a hard link: the same file under another name
    with pytest.raises(ColorizeError, match="would replace the input photo"):
        plan_jobs([album], out, overwrite=True)
    # --out inside the input folder: its earlier outputs are not inputs; a photo given
    # twice (itself and its folder) is done once
    inner = album / "coloured"
    (inner / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(inner / "sub" / "old.png")
    jobs = plan_jobs([album, album / "p1.jpg"], inner)
    assert sorted(j.target.relative_to(inner).as_posix() for j in jobs) == ["p0.png", "p1.png"]


# ---------------------------------------------------------------- 2. resume never mixes

@pytest.mark.slow
def test_rerun_refuses_cells_scored_on_other_val_photos(copied_run):
    photos, run = copied_run
    before = snapshot(run)
    target = sorted((photos / "val").iterdir())[1]
    Image.fromarray(np.asarray(Image.open(target))[::-1].copy()).save(target, quality=95)  # same name, other pixels
    res = cli(*run_args(photos, run, "l1,mse"))
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "holds finished cells trained or scored on other photos" in res.output
    assert f"val: 6 -> 6 images (changed {target.name})" in res.output and "l1 seed 0, mse seed 0" in res.output
    assert "--overwrite" in res.output
    assert snapshot(run) == before  # nothing mixed into the folder
    assert cli(*run_args(photos, run, "l1,mse"), "--overwrite").exit_code == 0


def test_rerun_refuses_cells_when_train_photos_were_removed(copied_run):
    photos, run = copied_run
    for p in sorted((photos / "train").iterdir())[:4]:
        p.unlink()
    res = cli(*run_args(photos, run, "l1,mse"))
    assert res.exit_code != 0 and "train: 16 -> 12 images (removed tr000.jpg, tr001.jpg, tr002.jpg, … (4 in all))" in res.output


def only_l1(run: Path) -> Path:
    """The copied run as if made with ``--losses l1``: its mse cell and option removed."""
    shutil.rmtree(run / "cells" / "mse")
    config = json.loads((run / "config.json").read_text())
    config["options"]["losses"] = "l1"
    config["combinations"] = [c for c in config["combinations"] if c["name"] == "l1"]
    (run / "config.json").write_text(json.dumps(config))
    return run


def _checkpoint(photos, cell: Path, width: int = 4, drop_data: bool = False) -> None:
    """A cell's checkpoint as an interrupted run leaves it (saved at a step boundary)."""
    from bench.train.loop import Interrupted, train_cell
    from bench.config.options import TrainSettings
    from colorbench_datasets import load_data
    from losses import LossOptions, parse_losses

    data = load_data(photos, size=32)
    (combo,) = parse_losses("l1")
    cell.mkdir(parents=True, exist_ok=True)
    calls = iter([False, True])  # one step, then "Ctrl-C"
    with pytest.raises(Interrupted):
        train_cell(combo, 0, data.train, TrainSettings(size=32, width=width, epochs=1, batch_size=4), LossOptions(),
                   torch.device("cpu"), checkpoint=cell / "checkpoint.pt", progress=False, should_stop=lambda: next(calls))
    if drop_data:  # as saved before checkpoints recorded their photos
        state = torch.load(cell / "checkpoint.pt", weights_only=True)
        del state["data"]
        torch.save(state, cell / "checkpoint.pt")


@pytest.mark.parametrize("saved_by", ["this version", "an older version"])
def test_a_checkpoint_is_never_resumed_on_other_train_photos(copied_run, saved_by):
    photos, run = copied_run
    cell = only_l1(run) / "cells" / "l1" / "seed0"
    for f in cell.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    _checkpoint(photos, cell, drop_data=saved_by != "this version")
    for p in sorted((photos / "train").iterdir())[:3]:
        p.unlink()
    res = cli(*run_args(photos, run, "l1"))
    assert res.exit_code != 0 and "IndexError" not in res.output and "Traceback" not in res.output
    assert f"cannot resume from {cell / 'checkpoint.pt'}" in res.output and "Delete it" in res.output
    if saved_by == "this version":  # named before any other cell trains
        assert "saved while training on other photos (train: 16 -> 13 images (removed tr000.jpg" in res.output
    else:  # the saved batch queue gives it away
        assert "saved batch queue is for 16 train photos and the train split now has 13" in res.output


def test_a_cell_recorded_before_cells_kept_their_photos_is_checked_by_names(copied_run):
    photos, run = copied_run
    for cell in (run / "cells").glob("*/seed0"):
        record = json.loads((cell / "metrics.json").read_text())
        del record["data"]
        (cell / "metrics.json").write_text(json.dumps(record))
    res = cli(*run_args(photos, run, "l1,mse"))
    assert res.exit_code == 0 and "already done, kept" in res.output
    (photos / "val" / "va000.jpg").rename(photos / "val" / "renamed.jpg")
    res = cli(*run_args(photos, run, "l1,mse"))
    assert res.exit_code != 0 and "val: 6 -> 6 images" in res.output and "other file names" in res.output


def test_val_photos_changed_under_an_unfinished_cell_resume_it(copied_run):
    """A checkpoint only depends on the train photos: new val photos score it, and every
    other cell is refused as above, not this one."""
    photos, run = copied_run
    cell = only_l1(run) / "cells" / "l1" / "seed0"
    for f in cell.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    _checkpoint(photos, cell)
    write_photos(photos / "val", 2, seed=7, prefix="new")
    res = cli(*run_args(photos, run, "l1"))
    assert res.exit_code == 0, res.output
    assert json.loads((cell / "metrics.json").read_text())["data"]["val"]["images"] == 8


# ---------------------------------------------------------------- 3. one writer per run folder

def test_a_second_run_on_a_busy_out_is_refused_naming_the_holder(photo_dir, tmp_path):
    from bench.rundir.lock import RunLock

    out = tmp_path / "run"
    with RunLock(out):
        res = cli(*run_args(photo_dir, out))
        assert res.exit_code != 0 and "is being written by another `bench run`" in res.output
        assert f"pid {os.getpid()}" in res.output and "wait for it" in res.output
        assert not out.exists()
    assert not (tmp_path / ".run.lock").exists()  # released and removed


def test_the_lock_covers_every_name_of_the_folder(photo_dir, tmp_path, monkeypatch):
    from bench.rundir.lock import RunLock

    out = tmp_path / "run"
    out.mkdir()
    os.symlink(out, tmp_path / "alias")
    monkeypatch.chdir(tmp_path)
    with RunLock("run"):
        for name in (out, tmp_path / "alias", "./run/"):
            res = cli(*run_args(photo_dir, name))
            assert res.exit_code != 0 and "is being written by another `bench run`" in res.output


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    from bench.rundir.lock import RunFolderBusy, RunLock

    out = tmp_path / "run"
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from bench.rundir.lock import RunLock
        RunLock({str(out)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=f"pid {proc.pid}"):
            RunLock(out).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with RunLock(out):  # kill -9 left the lock file, not the lock
        pass


def test_a_checkpoint_of_another_width_gets_the_documented_message(copied_run):
    photos, run = copied_run
    cell = run / "cells" / "l1" / "seed0"
    for f in cell.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    _checkpoint(photos, cell, width=8)  # another process, another --width, same --out
    res = cli(*run_args(photos, run, "l1,mse"))
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert f"cannot resume from {cell / 'checkpoint.pt'}: its generator does not match these options" in res.output
    assert "another --width" in res.output and "Delete it to restart this cell" in res.output


# ---------------------------------------------------------------- 5. options checked first

BAD_OPTIONS = {
    "--size 0": (["--size", "0"], "--size 0 is out of range: use 8 to 2048 px"),
    "--size 40": (["--size", "40"], "--generator unet: --size 40 does not fit a U-Net of at least 5 stride-2 levels"),
    "--size -32": (["--size", "-32"], "--size -32 is out of range"),
    "--size 1048576": (["--size", "1048576"], "--size 1048576 is out of range"),
    "--lr nan": (["--lr", "nan"], "--lr nan is out of range: use a positive number up to 1"),
    "--lr -1": (["--lr", "-1"], "--lr -1.0 is out of range"),
    "--lr inf": (["--lr", "inf"], "--lr inf is out of range"),
    "seed 2^64-1": (["--seeds", str(2**64 - 1)], "--seeds: 18446744073709551615 is out of range; seeds are whole numbers from 0 to 4,294,967,295"),
    "--width 0": (["--width", "0"], "--width must be at least 1 and at most 512"),
    "--width 100000": (["--width", "100000"], "--width must be at least 1 and at most 512"),
    "--epochs 0": (["--epochs", "0"], "--epochs must be at least 1"),
    "--batch-size 0": (["--batch-size", "0"], "--batch-size must be at least 1"),
    "--disc-width -3": (["--disc-width", "-3"], "--disc-width must be at least 1"),
    "--perceptual-layers": (["--perceptual-layers", "relu9_9"], "unknown VGG16 layer 'relu9_9'"),
    "--device cuda:99": (["--device", "cuda:99"], "--device"),
    "--out is a file": (["--out", "FILE"], "is a file; give a folder for the run"),
    "--out inside --data": (["--out", "INSIDE"], "is inside --data"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_every_option_is_checked_before_any_work(photo_dir, tmp_path, monkeypatch, case):
    import bench.run.stages
    import bench.score.networks

    def never(*a, **k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(bench.run.stages, "load_data", never)
    monkeypatch.setattr(bench.run.stages, "load_metric_nets", never)
    monkeypatch.setattr(bench.score.networks, "load_metric_nets", never)
    extra, message = BAD_OPTIONS[case]
    out = tmp_path / "run"
    (tmp_path / "FILE").write_text("x")
    places = {"FILE": str(tmp_path / "FILE"), "INSIDE": str(photo_dir / "results")}
    extra = [places.get(a, a) for a in extra]
    res = cli("run", "--data", photo_dir, "--losses", "l1", "--out", out, *TINY, *extra)
    assert res.exit_code != 0 and message in res.output, res.output
    assert "Traceback" not in res.output
    assert not out.exists() and not (photo_dir / "results").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "photos"]  # no lock or run folder left


def test_the_python_api_is_checked_too():
    from bench.config.validate import OptionError, validate
    from bench.config.options import RunConfig

    for bad in (dict(size="64"), dict(seeds=()), dict(seeds=(0, 0)), dict(betas=(0.5, 1.0)), dict(workers=-1),
                dict(eval_batch_size=0), dict(compile="yes"), dict(lr=True), dict(extra=[])):
        with pytest.raises(OptionError):
            validate(RunConfig(**bad))
    validate(RunConfig())  # the defaults are valid


# ---------------------------------------------------------------- 9. damaged run folders

def _cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def test_damaged_config_json_names_itself_and_the_fix(copied_run):
    photos, run = copied_run
    for content in ("[]", "{}", '{"options": {"size": "abc"}, "combinations": []}', '{"opti'):
        (run / "config.json").write_text(content)
        for args in (["report", run], ["colorize", "--run", run, "--loss", "l1", photos / "val", "--out", run.parent / "o"],
                     run_args(photos, run, "l1,mse")):
            res = cli(*args)
            assert res.exit_code != 0 and "Traceback" not in res.output, (content, args, res.output)
            assert f"{run / 'config.json'}" in res.output and "restore it" in res.output and "--overwrite" in res.output


@pytest.mark.parametrize("damage", ["hello", "cut at 500 bytes", "non-numeric value", "header only"])
@pytest.mark.slow
def test_a_damaged_metrics_csv_is_rebuilt_from_the_cells_and_said_so(copied_run, damage):
    photos, run = copied_run
    path = run / "metrics.csv"
    expected = pd.read_csv(path)
    if damage == "hello":
        path.write_text("hello")
    elif damage == "cut at 500 bytes":
        _cut(path, 500)
    elif damage == "non-numeric value":
        edited = expected.astype({"value": object})
        edited.loc[edited.index[-3], "value"] = "abc"  # a model row's value
        edited.to_csv(path, index=False)
    else:
        path.write_text("combination,seed,metric,value,note\n")
    res = cli("report", run, "--samples", "2", "--display-size", "32", "--device", "cpu")
    assert res.exit_code == 0, res.output
    md = (run / "report.md").read_text()
    assert "metrics.csv is damaged or cut short" in md and "read from their own metrics.json" in md
    summary = pd.read_csv(run / "summary.csv").set_index(["row", "metric"])["mean"]
    for r in expected[expected.combination.isin(["l1", "mse"])].dropna(subset=["value"]).itertuples():
        assert summary[(r.combination, r.metric)] == pytest.approx(r.value, rel=1e-9)
    if damage in ("hello", "header only"):
        assert "the `gray` baseline is missing" in md
    # the rerun rewrites metrics.csv from the records (and rescoring gray)
    assert cli(*run_args(photos, run, "l1,mse")).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(path), expected)


@pytest.mark.slow
def test_metrics_csv_edited_against_the_records_shows_the_records(copied_run):
    _, run = copied_run
    frame = pd.read_csv(run / "metrics.csv", dtype={"note": str}).fillna({"note": ""})
    truth = frame.loc[(frame.combination == "l1") & (frame.metric == "psnr"), "value"].item()
    frame.loc[(frame.combination == "l1") & (frame.metric == "psnr"), "value"] = 99.0
    frame.to_csv(run / "metrics.csv", index=False)
    assert cli("report", run, "--samples", "2", "--display-size", "32", "--device", "cpu").exit_code == 0
    md = (run / "report.md").read_text()
    assert "disagreed with the cells' own records for `l1` seed 0" in md
    assert pd.read_csv(run / "summary.csv").set_index(["row", "metric"])["mean"][("l1", "psnr")] == pytest.approx(truth)


@pytest.mark.parametrize("damage", ["truncated", "not an object", "non-numeric score"])
@pytest.mark.slow
def test_a_damaged_cell_record_is_named_with_the_fix(copied_run, damage):
    photos, run = copied_run
    cell = run / "cells" / "l1" / "seed0"
    record = cell / "metrics.json"
    if damage == "truncated":
        _cut(record, 40)
    elif damage == "not an object":
        record.write_text("[1, 2]")
    else:
        record.write_text(record.read_text().replace('"psnr": ', '"psnr": "x", "was": ', 1))
    res = cli(*run_args(photos, run, "l1,mse"))
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert str(record) in res.output and f"delete the folder {cell}" in res.output
    res = cli("report", run, "--samples", "2", "--display-size", "32", "--device", "cpu")
    assert res.exit_code == 0, res.output
    md = (run / "report.md").read_text()
    assert "the cell is left out of the table" in md and "which have no readable metrics.json" not in md
    _, rows = _table(md)
    assert rows["l1"][0] == "—"  # no numbers from a record that cannot be read


def _table(md: str):
    section = md.split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    # a row's name is `combination`, then " (not ranked)" for these few-step models
    return split(lines[0]), {split(line)[0].split("`")[1]: split(line)[1:] for line in lines[2:]}


@pytest.mark.slow
def test_a_truncated_generator_is_named_by_colorize_report_and_rerun(copied_run):
    photos, run = copied_run
    generator = run / "cells" / "l1" / "seed0" / "generator.pt"
    _cut(generator, 2000)
    res = cli("colorize", "--run", run, "--loss", "l1", photos / "val", "--out", run.parent / "o")
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert f"{generator} is not a readable generator" in res.output and "delete its cell folder" in res.output
    res = cli("report", run, "--samples", "2", "--display-size", "32", "--device", "cpu")
    assert res.exit_code == 0, res.output
    md = (run / "report.md").read_text()
    assert "`l1` seed 0 left out of the image figures" in md and "has no trained generator" not in md
    res = cli(*run_args(photos, run, "l1,mse"))
    assert res.exit_code == 0 and f"{generator} is missing or damaged" in res.output


@pytest.mark.slow
def test_a_damaged_train_log_leaves_out_only_its_curve(copied_run):
    _, run = copied_run
    (run / "cells" / "l1" / "seed0" / "train_log.csv").write_text("\x00\x01garbage")
    res = cli("report", run, "--samples", "2", "--display-size", "32", "--device", "cpu")
    assert res.exit_code == 0 and "train_log.csv is damaged" in res.output


# ---------------------------------------------------------------- 10./11. --overwrite, report --out

@pytest.mark.slow
def test_overwrite_discards_the_old_runs_report_and_figures_and_nothing_else(copied_run):
    photos, run = copied_run
    assert cli("report", run, "--samples", "2", "--display-size", "32", "--device", "cpu").exit_code == 0
    (run / "notes.txt").write_text("mine")
    res = cli(*run_args(photos, run, "mse", "--width", "8", "--overwrite"))
    assert res.exit_code == 0, res.output
    left = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    # the image and event folders hold the new run's files alone (its one cell, mse)
    trees = ("gallery/", "cells/mse/seed0/gallery/", "tensorboard/")
    assert {p.split("/")[1] for p in left if p.startswith("tensorboard/")} == {"mse"}
    assert [p for p in left if not p.startswith(trees)] == [
        ".metrics.lock", "cells/mse/seed0/curve.csv", "cells/mse/seed0/generator.pt", "cells/mse/seed0/metrics.json",
        "cells/mse/seed0/per_image.csv.gz", "cells/mse/seed0/state.pt", "cells/mse/seed0/train_log.csv", "config.json",
        "metrics.csv", "notes.txt", "per_image.csv.gz"]


@pytest.mark.slow
def test_report_refuses_to_replace_another_runs_report(copied_run, tmp_path):
    _, run = copied_run
    other = tmp_path / "other"
    shutil.copytree(run, other)
    assert cli("report", other, "--samples", "2", "--display-size", "32", "--device", "cpu").exit_code == 0
    before = snapshot(other)
    res = cli("report", run, "--out", other)
    assert res.exit_code != 0 and "is another run's folder" in res.output and "--overwrite" in res.output
    assert snapshot(other) == before
    cmp = tmp_path / "cmp"
    args = ["--samples", "2", "--display-size", "32", "--device", "cpu"]
    assert cli("report", run, other, "--out", cmp, *args).exit_code == 0
    assert cli("report", run, other, "--out", cmp, *args).exit_code == 0  # the same comparison again: fine
    res = cli("report", run, "--out", cmp, *args)
    assert res.exit_code != 0 and "holds a report on other runs (other, run)" in res.output
    assert cli("report", run, "--out", other, "--overwrite", *args).exit_code == 0


# ---------------------------------------------------------------- 12./13. same combination, same folder

def test_the_same_run_given_other_spellings_resumes(copied_run, monkeypatch):
    photos, run = copied_run
    monkeypatch.chdir(photos.parent)
    res = cli("run", "--data", "./photos/", "--losses", "mse , l1", "--out", "run", *TINY)
    assert res.exit_code == 0, res.output
    assert res.output.count("already done, kept") == 2
    os.symlink(photos, photos.parent / "link")
    res = cli("run", "--data", "link", "--losses", "l1,mse", "--out", run, *TINY)
    assert res.exit_code == 0 and res.output.count("already done, kept") == 2


def test_options_are_compared_as_what_they_mean(tmp_path, monkeypatch):
    from bench.config.identity import changed_options

    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    os.symlink(tmp_path / "photos", tmp_path / "link")
    old = {"data": "photos", "losses": "l1,100*l1+gan", "lr": 0.0002, "betas": [0.5, 0.999],
           "perceptual_layers": "relu1_2,relu2_2", "dataset": None}
    same = {"data": str(tmp_path / "link") + "/", "losses": "gan+1e2*l1, l1", "lr": 2e-4, "betas": (0.5, 0.999),
            "perceptual_layers": "relu2_2:1, relu1_2", "dataset": None}
    assert changed_options(old, same) == []
    assert changed_options({"dataset": None}, {"dataset": "sample"}) == []  # the default set, named
    assert changed_options(old, {**same, "losses": "l1,10*l1+gan", "lr": 1e-3}) == ["losses", "lr"]


def test_a_folder_that_is_not_a_run_is_never_written_over(photo_dir, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text('{"my": "settings"}')
    (folder / "report.md").write_text("# my notes")
    before = snapshot(folder)
    res = cli(*run_args(photo_dir, folder, "l1", "--overwrite"))
    assert res.exit_code != 0 and "is not a `bench run` folder" in res.output and "Choose another --out" in res.output
    (folder / "config.json").unlink()
    (folder / "metrics.csv").write_text("a,b\n1,2\n")
    res = cli(*run_args(photo_dir, folder, "l1"))
    assert res.exit_code != 0 and "a run would write over metrics.csv" in res.output
    assert snapshot(folder) == {k: v for k, v in before.items() if k != "config.json"} | {"metrics.csv": b"a,b\n1,2\n"}


@pytest.mark.slow
def test_a_run_folder_whose_name_is_not_utf8_reports(photo_dir, tmp_path):
    # (The library calls: click's test runner, unlike a terminal, cannot print such a name.)
    from bench.config.options import make_config
    from bench.report.build import ReportSettings, build_report
    from bench.run.runner import run_benchmark

    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9"))
    run_benchmark(make_config("quick", data=str(photo_dir), losses="l1", out=str(out), size=32, width=4, epochs=1,
                              batch_size=4), progress=False)
    build_report([out], settings=ReportSettings(samples=2, display_size=32))
    text = (out / "report.md").read_bytes().decode("utf-8")  # valid UTF-8 ...
    assert "r\\xe9" in text  # ... the byte shown escaped


def test_photos_that_cannot_fit_in_memory_are_refused_before_decoding(photo_dir, monkeypatch):
    import colorbench_datasets
    from colorbench_datasets import DataError, load_data

    monkeypatch.setattr(colorbench_datasets, "available_memory", lambda: 2**20)  # 1 MiB free
    monkeypatch.setattr(colorbench_datasets, "build_split", lambda *a, **k: pytest.fail("decoded anyway"))
    with pytest.raises(DataError, match=r"16 train and 6 val photos at --size 64 need about 0.0 GiB .*use a smaller --size"):
        load_data(photo_dir, size=64)


def test_colorize_finds_a_combination_by_any_order_of_its_terms(copied_run, tmp_path):
    from bench.colorize import resolve_combination
    from bench.rundir.read import load_run

    _, run = copied_run
    config = json.loads((run / "config.json").read_text())
    config["combinations"][0].update(name="100*l1+gan", spec="100*l1+gan")
    (run / "config.json").write_text(json.dumps(config))
    assert resolve_combination(load_run(run), "gan+1e2*l1") == "100*l1+gan"


# ---------------------------------------------------------------- 4. cached weights are checked

def random_alexnet_features() -> dict:
    """What an AlexNet file holds for LPIPS (its conv trunk), randomly initialised: a file
    that loads fine and would give plausible-looking, meaningless LPIPS numbers."""
    from torchvision.models import alexnet

    return {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}


def test_a_foreign_file_under_a_weights_name_is_missing_with_the_reason(tmp_path, monkeypatch):
    from conftest import place_in_cache
    from bench.score import networks
    from models import pretrained

    path = place_in_cache("alexnet", random_alexnet_features(), trusted=False)
    hashed = []
    real = pretrained.sha256
    monkeypatch.setattr(pretrained, "sha256", lambda p: hashed.append(p) or real(p))
    with logged_warnings("is not the published alexnet-owt-7be5be79.pth: its SHA-256 starts"):
        nets = networks.load_metric_nets("cpu")
    assert nets.lpips is None and "SHA-256 mismatch" in nets.notes["lpips"]
    assert nets.notes["lpips"].startswith("missing weights file alexnet-owt-7be5be79.pth")
    with pytest.raises(pretrained.WeightsUnavailable, match="delete it"):
        networks.load_metric_nets("cpu", strict=True)
    listing = cli("weights").output
    assert "WRONG FILE" in next(line for line in listing.splitlines() if path.name in line)
    assert hashed == [path]  # hashed once, the verdict remembered by size and mtime ...
    pretrained._verdicts.clear()
    pretrained.cache_status(pretrained.known_weights()["alexnet"])
    assert hashed == [path]  # ... across processes too (the verdict file) ...
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    pretrained.cache_status(pretrained.known_weights()["alexnet"])
    assert hashed == [path, path]  # ... until the file changes


def test_the_lpips_loss_falls_back_loudly_for_a_foreign_alexnet(tmp_path):
    from conftest import place_in_cache
    from losses import LOSSES, LossOptions
    from losses.lpips_loss import lpips_network

    place_in_cache("alexnet", random_alexnet_features(), trusted=False)
    lpips_network.cache_clear()
    with logged_warnings("SHA-256 starts"):
        term = LOSSES["lpips"].factory(LossOptions())
    assert term.weights_tag == "random-alexnet"


def test_colorize_skips_a_photo_too_large_for_memory_and_does_the_rest(tmp_path, monkeypatch):
    from bench import colorize as col
    from models import build_generator

    album = _album(tmp_path / "album")
    Image.new("RGB", (300, 200), "blue").save(album / "huge.png")  # stands in for a 150-megapixel scan
    real = col._combine

    def combine(img, ab):
        if img.size == (300, 200):
            raise MemoryError
        return real(img, ab)

    monkeypatch.setattr(col, "_combine", combine)
    G = build_generator("unet", 32, 4).eval()
    done, skipped = col.colorize_paths(G, 32, col.plan_jobs([album], tmp_path / "out"))
    assert sorted(j.source.name for j in done) == ["p0.png", "p1.jpg"]
    assert [(j.source.name, "too large to colourise" in r) for j, r in skipped] == [("huge.png", True)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]


def test_an_out_where_no_lock_can_be_made_is_named():
    from bench.rundir.lock import RunFolderBusy, RunLock

    with pytest.raises(RunFolderBusy, match="--out /proc/nope/run: cannot create its parent folder.*choose an --out"):
        RunLock("/proc/nope/run").acquire()  # /proc refuses new folders, even to root


def _photos_of_sizes(folder: Path, sizes: dict) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for name, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


def test_colorize_skips_a_photo_the_allocator_refuses_and_writes_the_rest(trained_run, tmp_path, monkeypatch):
    """torch's CPU allocator raises RuntimeError ("can't allocate memory"), not MemoryError;
    the photo that needs too much is skipped with its reason, the others are written. The
    allocation here really fails: the big photo asks torch for 4 TiB."""
    import bench.colorize as colorize_mod

    _, run = trained_run
    photos = _photos_of_sizes(tmp_path / "in", {"a.png": (40, 30), "huge.png": (64, 64), "b.png": (30, 40)})
    real = colorize_mod._combine

    def combine(img, ab_small):
        if img.size == (64, 64):  # as a photo far beyond memory at full resolution would
            torch.empty(1 << 42, dtype=torch.uint8)
        return real(img, ab_small)

    monkeypatch.setattr(colorize_mod, "_combine", combine)
    res = cli("colorize", *map(str, photos), "--run", str(run), "--loss", "l1", "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert "2 photo(s) colourised" in res.output and "1 skipped" in res.output


@pytest.mark.slow
def test_colorize_on_a_disk_that_refuses_a_file_names_it_and_what_was_written(trained_run, tmp_path):
    """A real write failure (the kernel's file-size limit, EFBIG, standing in for a full
    disk) while colourising: the file and the count of photos already written are named."""
    _, run = trained_run
    photos = _photos_of_sizes(tmp_path / "in", {"a.png": (32, 32), "b.png": (32, 32), "c.png": (512, 512)})
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"  # the write fails with EFBIG instead of killing us
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))\n"
        "from bench.cli import main\n"
        "main(sys.argv[1:], prog_name='bench')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "colorize", *map(str, photos), "--run", str(run), "--loss",
                           "l1", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          env={**os.environ, "COLORBENCH_OFFLINE": "1"})
    assert done.returncode == 1, done.stderr
    assert f"cannot write {tmp_path / 'out' / 'c.png'}: File too large" in done.stderr
    assert "2 of 3 photo(s) were written before it" in done.stderr and "another --out" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]  # no partial c.png


def test_messages_say_what_is_true(copied_run, tmp_path):
    """bench weights import of a FIFO; a finished cell's lost generator.pt (a rerun keeps the
    cell, so only a retrain restores it); a cell stopped while scoring; --dataset coco."""
    photos, run = copied_run
    fifo = tmp_path / "alexnet-owt-7be5be79.pth"
    os.mkfifo(fifo)
    res = cli("weights", "import", str(fifo))
    assert res.exit_code != 0 and "not a regular file (a FIFO" in res.output
    (run / "cells" / "l1" / "seed0" / "generator.pt").unlink()
    res = cli("colorize", str(photos / "val"), "--run", str(run), "--loss", "l1", "--out", str(tmp_path / "c"))
    assert res.exit_code != 0 and "delete the cell folder" in res.output and "train it again" in res.output
    (run / "cells" / "mse" / "seed0" / "metrics.json").unlink()  # as if killed after saving, before scoring
    status = cli("status", str(run)).output
    assert "trained but not scored" in status and "not started" not in status
    res = cli("run", "--dataset", "coco", "--out", str(tmp_path / "d"))
    assert res.exit_code != 0 and "did you mean 'coco-sample'" in res.output


def test_outputs_inside_the_runs_photo_folders_are_refused(copied_run, tmp_path):
    """A report's figures or colourised photos written into the photo folder would be read as
    photos by the next run on it."""
    photos, run = copied_run
    res = cli("report", str(run), "--out", str(photos / "train" / "report"))
    assert res.exit_code != 0 and "is inside the photo folder" in res.output
    res = cli("colorize", str(photos / "val"), "--run", str(run), "--loss", "l1", "--out", str(photos / "colour"))
    assert res.exit_code != 0 and "is inside the photo folder" in res.output
    assert not (photos / "train" / "report").exists() and not (photos / "colour").exists()
