"""Zhang et al.'s classification loss: bins, soft-encoding, rebalancing, decoding, and a
classification generator through the trainer, the runner and load_generator."""
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from colorbench_datasets import load_data
from losses import LOSSES, LossSpecError, generator_head, parse_losses, register_loss
from losses.classification import (
    ZHANG,
    ClassificationLoss,
    empirical_distribution,
    nearest_bin,
    rebalanced_cross_entropy,
    rebalancing_weights,
    smooth_distribution,
    soft_encode,
)
from models import build_generator
from models.ab_bins import annealed_mean, cube_surface, gamut_bins
from models.classifier import ColorClassifier

TINY = ["--size", "32", "--width", "8", "--epochs", "2", "--batch-size", "4", "-q"]


def skimage_ab(rgb: np.ndarray) -> np.ndarray:
    """(n, 3) sRGB in [0, 1] -> (n, 2) ab through skimage: a Lab conversion independent of ours."""
    from skimage.color import rgb2lab

    return rgb2lab(rgb[:, None, :])[:, 0, 1:]


def test_bins_are_exactly_the_in_gamut_cells_of_the_10_unit_grid():
    bins = gamut_bins(10).numpy()
    cells = {tuple(c) for c in np.round(bins / 10).astype(int)}
    assert len(cells) == len(bins) and np.allclose(bins, np.round(bins / 10) * 10)
    # Every bin holds some sRGB colour, and every colour on the gamut's boundary (which
    # spans the gamut's ab extent) falls in a bin: the set is exactly the in-gamut cells.
    boundary = {tuple(c) for c in np.round(skimage_ab(cube_surface().numpy()) / 10).astype(int)}
    assert cells == boundary
    # Interior colours add no cell: 200k random 8-bit colours all land in a bin.
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(200_000, 3)) / 255
    assert {tuple(c) for c in np.round(skimage_ab(colours) / 10).astype(int)} <= cells
    # The extent of Zhang et al.'s table: a in [-90, 100], b in [-110, 90].
    assert (0, 0) in cells
    assert (bins[:, 0].min(), bins[:, 0].max(), bins[:, 1].min(), bins[:, 1].max()) == (-90, 100, -110, 90)


def test_bins_follow_the_grid_step():
    coarse, fine = gamut_bins(20), gamut_bins(10)
    assert len(coarse) < len(fine)
    assert torch.equal(coarse, torch.round(coarse / 20) * 20)
    with pytest.raises(ValueError, match="positive"):
        gamut_bins(0)


def test_soft_encoding_uses_the_5_nearest_bins_with_gaussian_weights_summing_to_1():
    bins = gamut_bins().float()
    torch.manual_seed(0)
    ab = (torch.rand(2, 2, 5, 7) - 0.5) * 160  # includes points outside the gamut
    idx, w = soft_encode(ab, bins, neighbours=5, sigma=5.0)
    assert idx.shape == w.shape == (2, 5, 5, 7)
    assert torch.allclose(w.sum(1), torch.ones(2, 5, 7))
    point = ab[1, :, 3, 4]
    d = (bins - point).norm(dim=1)
    nearest = torch.argsort(d)[:5]
    assert torch.allclose(d[idx[1, :, 3, 4]], d[nearest])  # the 5 nearest, nearest first
    expected = torch.exp(-d[nearest] ** 2 / (2 * 5.0**2))
    assert torch.allclose(w[1, :, 3, 4], expected / expected.sum(), atol=1e-6)


def test_a_pixel_on_a_bin_centre_puts_most_weight_on_that_bin():
    bins = gamut_bins().float()
    ab = bins[[0, 100]].T.reshape(1, 2, 1, 2)
    idx, w = soft_encode(ab, bins)
    assert idx[0, 0, 0].tolist() == [0, 100] and (w[0, 0] > 0.5).all()
    assert nearest_bin(ab, bins).flatten().tolist() == [0, 100]


def test_rebalancing_weights_have_expected_value_1_and_favour_rare_colours():
    bins = gamut_bins().double()
    torch.manual_seed(0)
    p = torch.rand(len(bins), dtype=torch.float64) ** 4
    p /= p.sum()
    smoothed = smooth_distribution(p, bins, sigma=5.0)
    assert smoothed.sum().item() == pytest.approx(1) and not torch.allclose(smoothed, p)
    w = rebalancing_weights(smoothed, mix=0.5)
    assert (smoothed * w).sum().item() == pytest.approx(1)
    order = torch.argsort(smoothed)
    assert (w[order].diff() <= 1e-12).all()  # rarer colour, larger weight
    assert torch.allclose(rebalancing_weights(smoothed, mix=1.0), torch.ones_like(w))  # lambda 1: no rebalancing


def test_rebalancing_weights_average_1_over_the_training_pixels():
    """Without smoothing the expectation is literally the mean weight over the pixels."""
    bins = gamut_bins().float()
    torch.manual_seed(1)
    # A skewed picture: mostly greyish pixels, some strong colours.
    ab = torch.randn(3, 2, 16, 16) * 8
    ab[:, :, :3] = (torch.rand(3, 2, 3, 16) - 0.5) * 120
    p = empirical_distribution(ab, bins)
    assert p.sum().item() == pytest.approx(1) and (p > 0).sum() > 5
    w = rebalancing_weights(smooth_distribution(p, bins.double(), sigma=0), mix=0.5)
    assert w[nearest_bin(ab, bins)].mean().item() == pytest.approx(1, rel=1e-6)


def test_annealed_mean_is_the_mode_as_t_goes_to_0_and_the_mean_at_t_1():
    bins = gamut_bins().float()
    torch.manual_seed(0)
    logits = torch.randn(2, len(bins), 3, 4) * 3
    probs = torch.softmax(logits, 1)
    mean = torch.einsum("nqhw,qc->nchw", probs, bins)
    assert torch.allclose(annealed_mean(logits, bins, 1.0), mean, atol=1e-4)
    mode = bins[logits.argmax(1)].permute(0, 3, 1, 2)
    assert torch.allclose(annealed_mean(logits, bins, 1e-3), mode, atol=1e-3)
    # In between, the decoded colour is more saturated than the mean.
    t = annealed_mean(logits, bins, ZHANG.temperature)
    assert t.norm(dim=1).mean() > mean.norm(dim=1).mean()
    with pytest.raises(ValueError, match="temperature"):
        annealed_mean(logits, bins, 0)


def test_cross_entropy_is_lowest_at_the_soft_target():
    bins = gamut_bins().float()
    ab = (torch.rand(1, 2, 4, 4) - 0.5) * 60
    idx, w = soft_encode(ab, bins)
    target = torch.zeros(1, len(bins), 4, 4).scatter_(1, idx, w)
    ones = torch.ones(len(bins))
    good = rebalanced_cross_entropy(torch.log(target + 1e-12), idx, w, ones)
    uniform = rebalanced_cross_entropy(torch.zeros(1, len(bins), 4, 4), idx, w, ones)
    assert good < uniform and uniform.item() == pytest.approx(math.log(len(bins)), rel=1e-5)


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_class_head_keeps_the_regression_body_and_outputs_decoded_ab(name):
    head = LOSSES["classification"].generator_head
    torch.manual_seed(3)
    regression = build_generator(name, 32, 8)
    torch.manual_seed(3)
    G = build_generator(name, 32, 8, head=head)
    assert isinstance(G, ColorClassifier) and G.num_classes == len(gamut_bins())
    same = [k for k, v in regression.state_dict().items() if G.net.state_dict()[k].shape == v.shape]
    assert len(same) == len(regression.state_dict()) - 2  # all but the output conv's weight and bias
    assert all(torch.equal(regression.state_dict()[k], G.net.state_dict()[k]) for k in same)
    L = torch.rand(2, 1, 32, 32) * 2 - 1
    G.eval()
    ab, logits = G(L, head_output=True)
    assert ab.shape == (2, 2, 32, 32) and logits.shape == (2, G.num_classes, 32, 32)
    assert ab.abs().max() <= gamut_bins().abs().max() / 110 + 1e-6  # a convex mix of bin centres
    assert torch.equal(G(L), ab)  # plain calls (predict_ab, colorize) get the decoded ab alone
    assert not hasattr(G, "logits")  # nothing is stashed on the module for a loss to read


def test_classification_term_fits_its_prior_and_scores_the_head_output(photo_dir):
    info = LOSSES["classification"]
    assert info.needs_data and info.generator_head is not None and not info.adversarial  # declared, not probed
    data = load_data(photo_dir, size=32)
    term = ClassificationLoss()
    term.prepare(data.train)
    assert not torch.allclose(term.class_weights, torch.ones_like(term.class_weights))
    G = build_generator("unet", 32, 8, head=info.generator_head).train()
    fake, logits = G(data.train.L[:2, :, :32, :32], head_output=True)
    loss = term(None, fake, data.train.ab[:2, :, :32, :32], logits)
    loss.backward()
    assert torch.isfinite(loss) and G.net.model.model[3].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="class head"):
        term(None, fake, data.train.ab[:2, :, :32, :32], fake)  # ab is not the head's output


def test_a_combination_cannot_ask_for_two_generator_heads():
    @register_loss("test_other_head", "needs another head", generator_head={"kind": "other"})
    def _other(options):
        return torch.nn.Identity()

    try:
        with pytest.raises(LossSpecError, match="different generator outputs"):
            parse_losses("classification+test_other_head")
    finally:
        LOSSES.pop("test_other_head")
    assert generator_head(parse_losses("classification+gan")[0]) == LOSSES["classification"].generator_head
    assert generator_head(parse_losses("100*l1+gan")[0]) is None


@pytest.mark.slow
def test_classification_plus_gan_trains_saves_and_reloads(photo_dir, tmp_path):
    from bench.score.scorer import load_generator, predict_ab

    out = tmp_path / "run"
    res = CliRunner().invoke(
        main, ["run", "--data", str(photo_dir), "--losses", "classification+gan", "--out", str(out), *TINY]
    )
    assert res.exit_code == 0, res.output
    import pandas as pd

    log = pd.read_csv(out / "cells" / "classification+gan" / "seed0" / "train_log.csv")
    assert {"classification", "gan", "d_loss"} <= set(log.columns) and log["classification"].notna().all()
    G = load_generator(out / "cells" / "classification+gan" / "seed0" / "generator.pt")
    assert isinstance(G, ColorClassifier) and G.meta["head"]["temperature"] == ZHANG.temperature
    data = load_data(photo_dir, size=32)
    ab = predict_ab(G, data.val.L)
    assert ab.shape == data.val.ab.shape and torch.isfinite(ab).all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics.combination) == {"gray", "ground-truth", "classification+gan"}
    offline = metrics.metric.isin(["lpips", "fid", "kid"])  # no weights here: recorded as missing
    assert metrics[~offline].value.notna().all() and metrics[offline].value.isna().all()


def test_bench_losses_documents_the_classification_defaults():
    out = CliRunner().invoke(main, ["losses"]).output
    block = out[out.index("classification") : out.index("\ngan")]
    assert "Zhang, Isola & Efros" in block and "ECCV 2016" in block
    assert f"{len(gamut_bins())};" in block and "T = 0.38" in block and "lambda 0.5" in block
