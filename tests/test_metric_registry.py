"""Metrics are a registry of kinds: a new metric is one registered function (and its test),
with no other file edited -- the toy metrics here reach metrics.csv and the per-image files."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from conftest import logged_warnings
from bench.score import metrics
from bench.cli import main
from bench.score.scorer import Scorer
from bench.score.metrics import DERIVED, METRICS, register_metric
from bench.score import networks

TINY = ["--size", "32", "--width", "8", "--batch-size", "4", "--steps", "3", "-q"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def registered():
    """Registers what the test asks for; unregisters it afterwards."""
    names = []

    def register(name, **declared):
        def decorate(fn):
            names.append(name)
            return register_metric(name, **declared)(fn)

        return decorate

    yield register
    for name in names:
        METRICS.pop(name, None)


@pytest.mark.slow
def test_registered_per_image_and_derived_metrics_reach_metrics_csv_and_per_image_files(registered, photo_dir, tmp_path):
    @registered("toy_mae", higher_is_better=False, description="mean absolute sRGB error")
    def toy_mae(pred, target, batch):
        return (pred - target).abs().flatten(1).mean(1)

    @registered("toy_psnr_spread", kind=DERIVED, needs=("psnr",), higher_is_better=False,
                description="standard deviation of PSNR over the val photos")
    def toy_psnr_spread(pred, truth):
        return pred["psnr"].double().std()

    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out / "metrics.csv", dtype={"note": str}).fillna({"note": ""})
    cell = pd.read_csv(out / "cells" / "l1" / "seed0" / "per_image.csv.gz")
    baseline = pd.read_csv(out / "per_image.csv.gz")
    for combination, per_image in (("l1", cell), ("gray", baseline[baseline.combination == "gray"])):
        rows = frame[frame.combination == combination]
        assert list(rows.metric)[-2:] == ["toy_mae", "toy_psnr_spread"]  # registry order: after the others
        value = rows.set_index("metric")["value"]
        mae = per_image[per_image.metric == "toy_mae"]["value"]
        assert len(mae) == 6 and value["toy_mae"] == pytest.approx(mae.mean(), rel=1e-6)
        psnr = per_image[per_image.metric == "psnr"]["value"]
        assert value["toy_psnr_spread"] == pytest.approx(psnr.std(), rel=1e-5)
    # the report and the pairwise comparison take it from the registry as well
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    assert "toy_mae" in (out / "report.md").read_text()
    res = CliRunner().invoke(main, ["compare", str(out), "--metric", "toy_mae"])
    assert res.exit_code == 0 and "toy_mae" in res.output, res.output


def test_a_per_image_metric_gets_the_lab_batch_and_val_set_statistics_it_declares(registered):
    from test_scoring import _val

    seen = {}

    @registered("toy_ab_shift", higher_is_better=False, needs=("val_ab",),
                pool_weight=lambda batch: batch.lab_target[:, 0].flatten(1).mean(1),
                description="mean |ab| error, pooled by each photo's mean lightness")
    def toy_ab_shift(pred, target, batch):
        seen["cells"] = batch.cell_weights  # "val_ab": the val photos' colour distribution
        assert batch.lab_pred is batch.lab_pred  # converted once per batch
        return (batch.lab_pred[:, 1:] - batch.lab_target[:, 1:]).abs().flatten(1).mean(1).float()

    val = _val()
    scorer = Scorer.for_split(val, batch_size=5)
    scores = scorer.ab_scores(0.5 * val.ab)
    per_image = scores.per_image["toy_ab_shift"]
    lightness = metrics.rgb_to_lab(val.rgb.double() / 255)[:, 0].flatten(1).mean(1).numpy()
    assert scores.means["toy_ab_shift"] == pytest.approx(float((per_image * lightness).sum() / lightness.sum()), rel=1e-6)
    assert np.allclose(scorer.ground_truth_per_image()["toy_ab_shift_weight"], lightness)
    assert torch.equal(seen["cells"], scorer.cell_weights)
    assert list(scores.means)[-1] == "toy_ab_shift" and "toy_ab_shift" not in scorer.ground_truth()


def test_a_missing_network_makes_exactly_the_metrics_that_need_it_missing(registered, monkeypatch):
    monkeypatch.setenv("COLORBENCH_OFFLINE", "1")

    @registered("toy_deep", higher_is_better=False, network="inception", description="needs Inception")
    def toy_deep(pred, target, batch):
        return batch.net("inception")(pred).mean(1)

    with logged_warnings() as caught:
        nets = networks.load_metric_nets("cpu")
    assert set(nets.missing) == {"lpips", "fid", "kid", "toy_deep"}
    assert nets.notes["toy_deep"] == nets.notes["fid"] == "missing weights file pt_inception-2015-12-05-6726825d.pth"
    assert any("FID and KID and TOY_DEEP recorded as missing" in m for m in caught)
    from test_scoring import _val

    scorer = Scorer.for_split(_val(), nets)
    means = scorer.gray_scores().means
    assert math.isnan(means["toy_deep"]) and math.isnan(means["fid"]) and math.isfinite(means["psnr"])
    assert scorer.notes["toy_deep"] == "missing weights file pt_inception-2015-12-05-6726825d.pth"


def test_registration_checks_what_a_kind_must_declare(registered):
    with pytest.raises(ValueError, match="already registered"):
        register_metric("psnr", higher_is_better=True, description="again")(lambda p, t, b: p)
    with pytest.raises(ValueError, match="kind"):
        register_metric("toy_x", kind="per_set", higher_is_better=True, description="")(lambda p, t, b: p)
    with pytest.raises(ValueError, match="network"):
        register_metric("toy_x", kind="set", higher_is_better=True, description="")(lambda a, b: a)
    with pytest.raises(ValueError, match="computed from"):
        register_metric("toy_x", kind="derived", higher_is_better=True, description="")(lambda a, b: a)
    with pytest.raises(ValueError, match="computed from"):
        register_metric("toy_x", kind="derived", needs=("fid",), higher_is_better=True, description="")(lambda a, b: a)
    with pytest.raises(ValueError, match="may need val_ab"):
        register_metric("toy_x", needs=("val_lightness",), higher_is_better=True, description="")(lambda p, t, b: p)
    assert "toy_x" not in METRICS


def _code_strings(path: Path) -> set[str]:
    """The string literals of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
        and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings}


def test_the_scorer_and_the_network_loader_hold_no_metric_names():
    for module in ("bench/score/scorer.py", "bench/score/networks.py", "models/metric_nets.py", "bench/score/per_image.py"):
        assert not _code_strings(ROOT / module) & set(METRICS), module


@pytest.mark.slow
def test_a_toy_set_and_a_toy_derived_metric_reach_the_table_the_protocol_and_compare(registered, photo_dir,
                                                                                      tmp_path, monkeypatch):
    """What compare and "how the numbers were made" know of a metric comes from its
    registration: no name of a metric is spelled out in either."""
    from models import metric_nets

    class MeanColour(torch.nn.Module):  # a feature network: each photo's mean colour and its spread
        def forward(self, rgb):
            return torch.cat([rgb.mean((2, 3)), rgb.std((2, 3))], 1)

    monkeypatch.setitem(metric_nets.NETWORKS, "toy_colour", MeanColour)

    @registered("toy_set", kind="set", network="toy_colour", min_images=2, higher_is_better=False,
                description="distance of the mean colour features", protocol="mean and std of sRGB per photo, L2")
    def toy_set(pred_features, real_features):
        return (pred_features.mean(0) - real_features.mean(0)).norm()

    @registered("toy_spread", kind=DERIVED, needs=("psnr",), higher_is_better=False,
                description="spread of PSNR over the photos", protocol="standard deviation of per-photo PSNR")
    def toy_spread(pred, truth):
        return pred["psnr"].double().std()

    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1,mse", "--seeds", "0,1",
                                    "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out / "metrics.csv")
    l1 = frame[(frame.combination == "l1") & frame.metric.isin(["toy_set", "toy_spread"])]
    assert len(l1) == 4 and np.isfinite(l1.value).all()
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    report = (out / "report.md").read_text()
    assert "**toy_set**: mean and std of sRGB per photo, L2" in report
    assert "**toy_spread**: standard deviation of per-photo PSNR" in report
    for metric in ("toy_set", "toy_spread"):
        res = CliRunner().invoke(main, ["compare", str(out), "--metric", metric, "--resamples", "200"])
        assert res.exit_code == 0 and "not compared" not in res.output, res.output
        assert "l1" in res.output and "mse" in res.output
