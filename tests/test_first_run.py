"""What a new user meets first: a step budget that trains small sets long enough, every photo
used, tidy output, strict JSON, and one precision per run."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from conftest import logged_warnings
from bench.cli import main
from bench.config.options import PRESETS, QUICK_STEPS, RunConfig, make_config
from bench.train.loop import BatchStream, total_steps
from bench.config.options import TrainSettings

TINY = ["--size", "32", "--width", "8", "--batch-size", "4", "-q"]


def test_the_quick_preset_budgets_steps_and_epochs_or_steps_replace_it():
    quick = make_config("quick")
    assert (quick.steps, quick.epochs) == (QUICK_STEPS, None)
    assert make_config("quick", epochs=2).steps is None and make_config("quick", epochs=2).epochs == 2
    assert make_config("paper", steps=10).epochs is None and make_config("paper").epochs == 100
    assert RunConfig().steps == QUICK_STEPS  # the Python API's default is the quick preset's
    with pytest.raises(ValueError, match="--epochs or --steps, not both"):
        make_config("quick", epochs=2, steps=10)
    assert "steps" in PRESETS["quick"] and "epochs" not in PRESETS["quick"]


def test_a_step_budget_is_the_same_on_any_number_of_photos():
    for n in (5, 45, 1442):
        assert total_steps(TrainSettings(steps=300, batch_size=16), n) == 300
    # epochs round up: every photo is seen that many times at least
    assert total_steps(TrainSettings(epochs=3, steps=None, batch_size=16), 45) == math.ceil(3 * 45 / 16)


def test_batches_use_every_photo_and_span_passes():
    """45 photos in batches of 16: no photo is left over at a pass's end; over 3 passes each
    photo is drawn exactly 3 times."""
    stream = BatchStream(45, 16, seed=0)
    drawn = torch.cat([stream.next() for _ in range(math.ceil(3 * 45 / 16) - 1)])  # 8 batches = 128 draws
    drawn = torch.cat([drawn, stream.next()[: 3 * 45 - len(drawn)]])
    assert torch.bincount(drawn, minlength=45).tolist() == [3] * 45
    # seeded: the same stream again, and a resumed one continues identically
    again = BatchStream(45, 16, seed=0)
    first = [again.next() for _ in range(4)]
    resumed = BatchStream(45, 16, seed=0)
    resumed.load_state_dict(again.state_dict())
    assert torch.equal(resumed.next(), again.next())
    fresh = BatchStream(45, 16, seed=0)
    assert all(torch.equal(a, fresh.next()) for a in first)


def test_steps_option_trains_exactly_that_many_steps_and_times_them(photo_dir, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1", "--steps", "7", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    log = pd.read_csv(out / "cells" / "l1" / "seed0" / "train_log.csv")
    assert list(log["step"]) == list(range(7)) and (log["seconds"] > 0).all()
    record = json.loads((out / "cells" / "l1" / "seed0" / "metrics.json").read_text())
    assert record["steps"] == 7 and record["timed_steps"] == 4 and record["step_seconds"] > 0
    assert (record["precision"], record["device"]) == (json.loads((out / "config.json").read_text())["precision"], "cpu")
    assert json.loads((out / "config.json").read_text())["steps_per_cell"] == 7
    both = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--steps", "7", "--epochs", "1", *TINY])
    assert both.exit_code != 0 and "--epochs or --steps, not both" in both.output


def test_results_json_has_null_not_nan(photo_dir, tmp_path):
    """Missing LPIPS/FID (no weights offline) are null: strict JSON parsers accept the file."""
    out = tmp_path / "run"
    assert CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1", "--steps", "2",
                                     "--out", str(out), *TINY]).exit_code == 0
    text = (out / "cells" / "l1" / "seed0" / "metrics.json").read_text()

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    record = json.loads(text, parse_constant=refuse)
    assert record["metrics"]["lpips"] is None and record["metrics"]["psnr"] > 0
    json.loads((out / "config.json").read_text(), parse_constant=refuse)
    # and the table reads the nulls back as missing values
    frame = pd.read_csv(out / "metrics.csv")
    assert frame[(frame.combination == "l1") & (frame.metric == "lpips")]["value"].isna().all()


def test_printed_summary_shows_a_dash_for_missing_values_and_one_precision_per_metric(photo_dir, tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1,mse", "--steps", "2",
                                    "--out", str(tmp_path / "run"), *TINY])
    assert res.exit_code == 0, res.output
    table = res.output.split("(mean over seeds", 1)[1].splitlines()[1:6]
    header = [t for t in table[0].split() if t not in ("↑", "↓")]
    assert "NaN" not in res.output and "nan" not in " ".join(table)
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert set(rows) == {"gray", "ground-truth", "l1", "mse"}
    assert rows["l1"][header.index("lpips")] == "—" and rows["l1"][header.index("psnr")] != "—"
    for column in range(len(header)):
        numbers = [r[column] for r in rows.values() if r[column] != "—"]
        decimals = {len(n.split(".")[1]) if "." in n else 0 for n in numbers}
        assert len(decimals) <= 1, (header[column], numbers)  # one precision per metric


def test_a_bad_data_folder_is_reported_before_any_weights_warning(tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", str(tmp_path / "nonexistent"), "-q"])
    assert res.exit_code != 0 and "does not exist" in res.output
    assert "WARNING" not in res.output and "missing" not in res.output and "Downloading" not in res.output


@pytest.mark.slow
def test_each_missing_weights_file_is_one_line(photo_dir, tmp_path):
    with logged_warnings() as caught:
        res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "perceptual", "--steps", "1",
                                        "--out", str(tmp_path / "run"), *TINY])
    assert res.exit_code == 0, res.output
    messages = sorted({m for m in caught if "is missing (" in m})
    assert len(messages) == 3, messages  # vgg16, alexnet, inception: one warning each ...
    assert all("\n" not in m and "!!!" not in m for m in messages)  # ... of one line
    assert {m.split()[0] for m in messages} == {
        "vgg16-397923af.pth", "alexnet-owt-7be5be79.pth", "pt_inception-2015-12-05-6726825d.pth"}


def test_a_failed_download_prints_no_downloading_line(monkeypatch, capsys):
    """Not offline by setting, but without a network: torch.hub must not announce a download."""
    import urllib.error

    from models import pretrained

    monkeypatch.delenv("COLORBENCH_OFFLINE")

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    with pytest.raises(pretrained.WeightsUnavailable, match="download failed"):
        pretrained.load_state_dict(pretrained.known_weights()["alexnet"])
    captured = capsys.readouterr()
    assert "Downloading" not in captured.err + captured.out
    assert not pretrained.cached_path(pretrained.known_weights()["alexnet"]).exists()


def test_a_run_is_never_continued_in_another_precision(photo_dir, tmp_path, monkeypatch):
    """``--precision auto`` resolves per machine: a run made in fp32 and resumed where auto
    means bf16 is refused, naming both and the option that continues it."""
    import bench.run.runner as runner

    out = str(tmp_path / "run")
    args = ["run", "--data", str(photo_dir), "--losses", "l1", "--steps", "2", "--out", out, *TINY]
    assert CliRunner().invoke(main, [*args, "--precision", "fp32"]).exit_code == 0
    with monkeypatch.context() as mp:
        mp.setattr(runner, "resolve_precision", lambda requested, device: "bf16")  # a bf16-native machine
        res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert "trained in fp32 on cpu" in res.output and "bf16" in res.output and "--precision fp32" in res.output
    # continuing it in its own precision works, and keeps the finished cell
    again = CliRunner().invoke(main, [*args, "--precision", "fp32"])
    assert again.exit_code == 0 and "already done" in again.output
