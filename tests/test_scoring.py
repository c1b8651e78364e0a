"""Scorer: every metric for a whole val split, batched, with networks passed in."""
import math

import numpy as np
import pytest
import torch

from bench.score.scorer import Scorer
from bench.score.metrics import METRICS
from colorbench_datasets.tensors import rgb_uint8_to_split
from conftest import real_photos
from bench.score.networks import MetricNets
from models.pretrained import known_weights


def _val(size=40):
    crops = [img[:size, :size] for img in real_photos()] + [img[-size:, -size:] for img in real_photos()]
    rgb = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    return rgb_uint8_to_split(rgb, [f"p{i}" for i in range(len(crops))])


def _tiny_nets():
    g = torch.Generator().manual_seed(0)
    w_l, w_i = torch.randn(4, 3, 3, 3, generator=g), torch.randn(5, 3, 3, 3, generator=g)
    conv = torch.nn.functional.conv2d
    lp = lambda a, b: (conv(a, w_l).relu() - conv(b, w_l).relu()).pow(2).mean((1, 2, 3), keepdim=True)  # noqa: E731
    inc = lambda x: conv(x, w_i).relu().mean((2, 3))  # noqa: E731
    return MetricNets({"lpips-net": lp, "inception": inc})


def test_scorer_is_independent_of_batch_size_and_scores_the_truth_perfectly():
    val, nets = _val(), _tiny_nets()
    ab = 0.5 * val.ab + 0.03 * torch.randn(val.ab.shape, generator=torch.Generator().manual_seed(1))
    whole, small = Scorer.for_split(val, nets, 64), Scorer.for_split(val, nets, 5)
    a, b = whole.ab_scores(ab).means, small.ab_scores(ab).means
    assert list(a) == list(METRICS) and all(math.isfinite(v) for v in a.values())
    assert a == pytest.approx(b, rel=1e-5, abs=1e-7)  # set metrics see the whole set either way
    truth = whole.ab_scores(val.ab).means
    assert truth["psnr"] > 40 and truth["ssim"] > 0.999 and truth["de00"] < 0.05
    # float32 round-off makes most errors ~1e-6, not 0, so most of the t = 0 point of the
    # curve is lost: at most half a unit of 150, 0.33 points
    assert 100 - 50 / 150 - 1e-6 < truth["auc"] <= 100
    assert truth["lpips"] < 1e-8 and abs(truth["fid"]) < 1e-4 and truth["delta_cf"] < 0.05
    assert a["de00"] > 1 and a["fid"] > truth["fid"] + 0.01  # (KID at n=12 is too noisy to order)
    assert whole.notes == {"fid": f"n={len(val)}", "kid": f"n={len(val)}"}


def test_gray_has_no_colour_and_its_delta_cf_is_the_photos_colourfulness():
    scorer = Scorer.for_split(_val())
    gray = scorer.gray_scores().means
    assert set(gray) == {"psnr", "ssim", "de00", "cf", "delta_cf", "auc", "auc_rebal"}  # no networks asked for
    assert gray["cf"] < 1
    assert gray["delta_cf"] == pytest.approx(scorer.ground_truth()["cf"] - gray["cf"], rel=1e-5)
    assert Scorer.for_split(_val(), batch_size=3).gray_scores().means == pytest.approx(gray, rel=1e-5)


def test_a_missing_network_leaves_its_metrics_empty_with_the_file_named():
    nets = _tiny_nets()
    del nets.networks["lpips-net"]
    nets.missing["lpips"] = known_weights()["alexnet"]
    scorer = Scorer.for_split(_val(), nets)
    scores = scorer.gray_scores().means
    assert math.isnan(scores["lpips"]) and math.isfinite(scores["fid"])
    assert scorer.notes["lpips"] == "missing weights file alexnet-owt-7be5be79.pth"
