"""The runner end to end on tiny data, and the same-seed promises."""
import json
import math

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.config.options import make_config
from bench.score.metrics import METRICS
from bench.config.options import TrainSettings
from bench.train.loop import build_terms, make_generator
from colorbench_datasets import load_data
from losses import LossOptions, parse_losses

TINY = ["--size", "32", "--width", "8", "--epochs", "2", "--batch-size", "4", "-q"]


def test_every_combination_of_a_seed_starts_from_the_same_generator():
    settings = TrainSettings(size=32, width=8)
    combos = parse_losses("mse,100*l1+gan")
    weights = []
    for combo in combos:
        G = make_generator(settings, seed=7)
        build_terms(combo, LossOptions(), seed=7)  # a discriminator must not disturb G's init
        weights.append(torch.cat([p.flatten() for p in G.parameters()]))
    assert torch.equal(weights[0], weights[1])
    other = torch.cat([p.flatten() for p in make_generator(settings, seed=8).parameters()])
    assert not torch.equal(weights[0], other)


@pytest.mark.slow
def test_every_combination_of_a_seed_sees_the_same_batches(photo_dir, monkeypatch):
    """Record the batches train_cell draws for two combinations and compare them."""
    import bench.train.loop as train_mod

    seen = {}
    real = train_mod.random_crop_flip

    def spy(L, ab, size, gen):
        out = real(L, ab, size, gen)
        seen.setdefault(current, []).append(out[0].clone())
        return out

    monkeypatch.setattr(train_mod, "random_crop_flip", spy)
    data = load_data(photo_dir, size=32)
    settings = TrainSettings(size=32, width=8, epochs=2, batch_size=4)
    for current in ("mse", "100*l1+gan"):
        (combo,) = parse_losses(current)
        train_mod.train_cell(combo, 0, data.train, settings, LossOptions(), torch.device("cpu"), progress=False)
    assert len(seen["mse"]) == 8
    assert all(torch.equal(a, b) for a, b in zip(seen["mse"], seen["100*l1+gan"]))


@pytest.mark.slow
def test_tiny_run_end_to_end_writes_config_metrics_and_cells(photo_dir, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main, ["run", "--data", str(photo_dir), "--losses", "mse,l1,100*l1+gan,perceptual", "--out", str(out), *TINY]
    )
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out / "metrics.csv", dtype={"note": str}).fillna({"note": ""})
    assert list(frame.columns) == ["combination", "seed", "metric", "value", "note"]
    assert list(frame["combination"].unique()) == ["gray", "ground-truth", "mse", "l1", "100*l1+gan", "perceptual[random-vgg]"]
    models = frame[frame.combination != "ground-truth"]
    assert (models.groupby("combination")["metric"].apply(list) == [list(METRICS)] * 5).all()
    # offline: the metrics that need no weights have values in every row ...
    plain = models[~models.metric.isin(["lpips", "fid", "kid"])]
    assert plain["value"].notna().all() and (plain["note"] == "").all()
    # ... and LPIPS/FID/KID are empty, the note naming the missing file
    missing = models[models.metric.isin(["lpips", "fid", "kid"])].set_index(["combination", "metric"])
    assert missing["value"].isna().all()
    assert (missing.xs("lpips", level="metric")["note"] == "missing weights file alexnet-owt-7be5be79.pth").all()
    assert (missing.xs("fid", level="metric")["note"] == "missing weights file pt_inception-2015-12-05-6726825d.pth").all()
    truth = frame[frame.combination == "ground-truth"]
    assert list(truth["metric"]) == ["cf"] and truth["value"].item() > 0
    gray = models[models.combination == "gray"].set_index("metric")["value"]
    assert gray["cf"] < 1 and gray["delta_cf"] == pytest.approx(truth["value"].item() - gray["cf"], abs=1e-4)
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["size"] == 32 and config["data"]["train_images"] == 16
    assert config["precision"] in ("fp32", "bf16") and "torch" in config["versions"]
    assert config["ground_truth"]["cf"] == pytest.approx(truth["value"].item())
    cell = out / "cells" / "100xl1+gan" / "seed0"
    log = pd.read_csv(cell / "train_log.csv")
    assert len(log) == 8 and {"l1", "gan", "total", "d_loss"} <= set(log.columns)
    assert log["total"].iloc[0] == pytest.approx(100 * log["l1"].iloc[0] + log["gan"].iloc[0], rel=1e-5)
    assert (cell / "generator.pt").is_file() and not (cell / "checkpoint.pt").exists()
    assert "perceptual[random-vgg]" in res.output
    assert "lpips: missing weights file alexnet-owt-7be5be79.pth" in res.output  # under the summary table


@pytest.mark.slow
def test_same_seed_same_config_gives_identical_metrics(photo_dir, tmp_path):
    args = ["run", "--data", str(photo_dir), "--losses", "l1,gan", "--seeds", "0,1", *TINY]
    for name in ("a", "b"):
        assert CliRunner().invoke(main, [*args, "--out", str(tmp_path / name)]).exit_code == 0
    a, b = (pd.read_csv(tmp_path / n / "metrics.csv") for n in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)
    # and different seeds really differ
    l1 = a[(a.combination == "l1") & (a.metric == "psnr")]
    assert l1[l1.seed == 0].value.item() != l1[l1.seed == 1].value.item()


def test_rerun_into_the_same_out_keeps_finished_cells_and_refuses_other_options(photo_dir, tmp_path):
    out = str(tmp_path / "run")
    args = ["run", "--data", str(photo_dir), "--losses", "l1", "--out", out, *TINY]
    assert CliRunner().invoke(main, args).exit_code == 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "already done" in again.output
    other = CliRunner().invoke(main, [*args, "--epochs", "3"])
    assert other.exit_code != 0 and "--epochs: 2 -> 3" in other.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--losses", "l1+"], "malformed term"),
        (["--size", "48"], "multiples of 32"),
        (["--seeds", "0,x"], "not a comma-separated list of integers"),
        (["--batch-size", "64"], "larger than the 16 training images"),
        (["--generator", "vit"], "choose one of: resunet, unet"),
        (["--disc-width", "0"], "--disc-width must be at least 1"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device"),
    ],
)
def test_bad_options_fail_with_a_clear_message(photo_dir, tmp_path, args, message):
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--out", str(tmp_path / "r"), *TINY, *args])
    assert res.exit_code != 0
    assert message in res.output


def test_presets_fill_defaults_and_options_override():
    cfg = make_config("paper", epochs=1)
    assert (cfg.size, cfg.width, cfg.batch_size, cfg.epochs) == (256, 64, 16, 1)
    assert (make_config("quick").size, make_config("quick").steps) == (32, 300)


def test_discriminator_width_follows_the_generator_width_unless_given():
    from losses import LOSSES, LossOptions

    assert make_config("paper").disc_width == 64  # pix2pix: ndf = ngf = 64
    assert make_config("quick").disc_width == make_config("quick").width == 32
    assert make_config("quick", width=48).disc_width == 48
    assert make_config("quick", disc_width=16).disc_width == 16
    from bench.config.options import RunConfig

    assert RunConfig(width=24).disc_width == 24  # the Python API resolves it alike
    term = LOSSES["gan"].factory(LossOptions(disc_width=16))
    first = next(m for m in term.discriminator.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == 16


def test_saved_generator_reloads_and_predicts_like_the_trained_one(photo_dir, tmp_path):
    from bench.score.scorer import load_generator, predict_ab

    out = tmp_path / "run"
    assert CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1", "--out", str(out), *TINY]).exit_code == 0
    G = load_generator(out / "cells" / "l1" / "seed0" / "generator.pt")
    data = load_data(photo_dir, size=32)
    ab = predict_ab(G, data.val.L)
    assert ab.shape == data.val.ab.shape and G.meta["combination"] == "l1"


def test_bf16_training_keeps_weights_and_batchnorm_in_fp32_and_runs_channels_last(photo_dir):
    from bench.train.loop import train_cell
    from colorbench_datasets import resolve_sources
    from colorbench_datasets.tensors import build_split
    from losses import LossOptions, parse_losses

    split, _ = build_split(resolve_sources(photo_dir).train[:4], 32, True)
    settings = TrainSettings(size=32, width=8, epochs=1, batch_size=2, precision="bf16")
    (combo,) = parse_losses("100*l1+gan")
    result = train_cell(combo, 0, split, settings, LossOptions(disc_width=8), torch.device("cpu"), progress=False)
    assert result.diverged_at is None and len(result.log) == 2
    assert all(math.isfinite(v) for row in result.log for k, v in row.items() if k not in ("step", "epoch"))
    state = result.generator.state_dict()
    assert all(t.dtype == torch.float32 for k, t in state.items() if t.is_floating_point()), "weights/BN stats left fp32"
    conv = next(m for m in result.generator.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # oneDNN's bf16 kernels want NHWC
