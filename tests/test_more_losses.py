"""GAN objectives, huber, perceptual layer options and LPIPS as a training loss."""
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from conftest import logged_warnings
from bench.cli import main
from colorbench_datasets.lab import AB_SCALE
from losses import LOSSES, LossOptions
from losses.adversarial import GAN_MODES, GANLoss, gradient_penalty


@pytest.mark.parametrize("mode", GAN_MODES)
def test_every_gan_mode_gives_finite_losses_and_gradients(mode):
    torch.manual_seed(0)
    term = LOSSES["gan"].factory(LossOptions(gan_mode=mode))
    L, real = torch.rand(2, 1, 32, 32), torch.rand(2, 2, 32, 32)
    fake = torch.rand(2, 2, 32, 32, requires_grad=True)
    d = term.discriminator_loss(L, fake, real)
    d.backward()
    assert torch.isfinite(d) and all(torch.isfinite(p.grad).all() for p in term.discriminator.parameters())
    g = term(L, fake, real)
    g.backward()
    assert torch.isfinite(g) and fake.grad.abs().sum() > 0


def test_cli_offers_every_gan_mode():
    out = CliRunner().invoke(main, ["run", "--help"]).output
    assert "[vanilla|lsgan|hinge|wgangp]" in out.replace(" ", "").replace("\n", "")
    assert set(GAN_MODES) == {"vanilla", "lsgan", "hinge", "wgangp"}


def test_hinge_clips_the_discriminator_but_not_the_generator():
    hinge = GANLoss("hinge")
    confident = torch.full((4,), 3.0)
    assert hinge(confident, True).item() == 0  # real scored > 1: no D loss
    assert hinge(-confident, False).item() == 0  # fake scored < -1: no D loss
    assert hinge(torch.tensor([0.5]), True).item() == pytest.approx(0.5)
    assert hinge(-confident, True, for_discriminator=False).item() == pytest.approx(3.0)  # G: -mean


def test_wasserstein_losses_are_signed_means():
    wgan = GANLoss("wgangp")
    x = torch.tensor([1.0, 3.0])
    assert wgan(x, True).item() == pytest.approx(-2) and wgan(x, False).item() == pytest.approx(2)


def test_gradient_penalty_of_a_linear_critic_is_exact():
    """For f(L, ab) = mean over pixels of c . ab, the gradient w.r.t. ab is c / (H W)
    everywhere, so the penalty is known in closed form."""

    class Linear(nn.Module):
        def forward(self, x):
            return (x[:, 1:] * torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)).sum(1, keepdim=True)

    L, real, fake = torch.rand(3, 1, 4, 4), torch.rand(3, 2, 4, 4), torch.rand(3, 2, 4, 4)
    grad_norm = 5.0 / 16 * 4  # |(3, 4)| / (H W) per pixel, times sqrt(H W * 1) over 16 pixels
    expected = 10.0 * (grad_norm - 1) ** 2
    assert gradient_penalty(Linear(), L, real, fake).item() == pytest.approx(expected)


def test_wgangp_discriminator_loss_adds_the_penalty(monkeypatch):
    import losses.adversarial as adv

    torch.manual_seed(0)
    term = LOSSES["gan"].factory(LossOptions(gan_mode="wgangp")).eval()
    L, fake, real = torch.rand(2, 1, 32, 32), torch.rand(2, 2, 32, 32), torch.rand(2, 2, 32, 32)
    with_gp = term.discriminator_loss(L, fake, real)
    monkeypatch.setattr(adv, "gradient_penalty", lambda *a, **k: torch.tensor(0.0))
    without = term.discriminator_loss(L, fake, real)
    assert with_gp.item() > without.item()


def test_huber_is_quadratic_below_10_ab_units_and_l1_above():
    term = LOSSES["huber"].factory(LossOptions())
    delta = 10 / AB_SCALE

    def loss(ab_units):
        fake = torch.full((1, 2, 2, 2), ab_units / AB_SCALE)
        return term(None, fake, torch.zeros_like(fake)).item()

    assert loss(5) == pytest.approx(0.5 * (5 / AB_SCALE) ** 2 / delta)
    assert loss(30) == pytest.approx(30 / AB_SCALE - 0.5 * delta)
    l1 = LOSSES["l1"].factory(LossOptions())
    fake = torch.full((1, 2, 2, 2), 30 / AB_SCALE)
    assert loss(30) == pytest.approx(l1(None, fake, torch.zeros_like(fake)).item() - 0.5 * delta)


@pytest.mark.slow
def test_perceptual_layers_and_weights_are_options():
    from losses.perceptual import parse_layer_weights

    assert parse_layer_weights("relu3_3:0.5, relu1_2") == (("relu1_2", 1.0), ("relu3_3", 0.5))
    L, fake = torch.rand(1, 1, 32, 32), torch.rand(1, 2, 32, 32) - 0.5
    real = torch.zeros_like(fake)
    with logged_warnings("."):
        one = LOSSES["perceptual"].factory(LossOptions(perceptual_layers="relu2_2"))
    two = LOSSES["perceptual"].factory(LossOptions(perceptual_layers="relu2_2:2"))
    both = LOSSES["perceptual"].factory(LossOptions(perceptual_layers="relu1_2,relu2_2"))
    first = LOSSES["perceptual"].factory(LossOptions(perceptual_layers="relu1_2"))
    assert len(one.features.slices) == 1 and len(both.features.slices) == 2
    assert two(L, fake, real).item() == pytest.approx(2 * one(L, fake, real).item(), rel=1e-5)
    assert both(L, fake, real).item() == pytest.approx(one(L, fake, real).item() + first(L, fake, real).item(), rel=1e-5)


@pytest.mark.parametrize(
    "spec, message",
    [("relu9_9", "unknown VGG16 layer 'relu9_9'"), ("relu2_2,relu2_2", "twice"),
     ("relu2_2:x", "not a number"), ("relu2_2:-1", "positive"), ("", "unknown VGG16 layer ''")],
)
def test_bad_perceptual_layers_are_refused_clearly(spec, message):
    with pytest.raises(ValueError, match=message):
        LOSSES["perceptual"].factory(LossOptions(perceptual_layers=spec))


def test_bad_perceptual_layers_fail_the_run_before_training(photo_dir, tmp_path):
    res = CliRunner().invoke(
        main, ["run", "--data", str(photo_dir), "--losses", "perceptual", "--perceptual-layers", "relu6_1",
               "--out", str(tmp_path / "r"), "-q"],
    )
    assert res.exit_code != 0 and "unknown VGG16 layer 'relu6_1'" in res.output


def test_lpips_offline_falls_back_loudly_or_fails_when_strict():
    from models.pretrained import WeightsUnavailable

    with logged_warnings("RANDOMLY INITIALISED AlexNet"):
        term = LOSSES["lpips"].factory(LossOptions())
    assert term.weights_tag == "random-alexnet"
    assert not any(p.requires_grad for p in term.parameters())
    term.train()
    assert not term.lpips.training  # frozen: stays in eval mode
    L, real = torch.rand(2, 1, 64, 64) * 2 - 1, torch.rand(2, 2, 64, 64) - 0.5
    fake = (real + 0.2 * torch.randn_like(real)).requires_grad_(True)
    loss = term(L, fake, real)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    assert term(L, real, real).item() == pytest.approx(0, abs=1e-6)
    with pytest.raises(WeightsUnavailable, match="bench weights import alexnet-owt-7be5be79.pth"):
        LOSSES["lpips"].factory(LossOptions(strict_weights=True))


@pytest.mark.slow
def test_lpips_uses_cached_imagenet_alexnet_when_present():
    from torchvision.models import alexnet

    from conftest import place_in_cache
    from losses.lpips_loss import lpips_network

    net = alexnet(weights=None)
    place_in_cache("alexnet", net.state_dict())
    lpips_network.cache_clear()
    term = LOSSES["lpips"].factory(LossOptions())
    assert term.weights_tag is None
    backbone = term.lpips.net.net
    assert torch.equal(backbone.slice1[0].weight, net.features[0].weight)
    assert torch.equal(getattr(backbone.slice5, "10").weight, net.features[10].weight)


@pytest.mark.slow
def test_lpips_fallback_tag_goes_into_the_run_name(photo_dir, tmp_path):
    import pandas as pd

    out = tmp_path / "run"
    res = CliRunner().invoke(
        main, ["run", "--data", str(photo_dir), "--losses", "l1+lpips,huber", "--out", str(out),
               "--size", "64", "--width", "8", "--epochs", "1", "--batch-size", "8", "-q"],
    )
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(out / "metrics.csv").combination) == {"gray", "ground-truth", "l1+lpips[random-alexnet]", "huber"}


def test_bench_losses_documents_the_new_terms():
    out = CliRunner().invoke(main, ["losses"]).output
    for text in ("huber", "delta = 10 ab units", "lpips", "CVPR 2018", "hinge", "wgangp", "Gulrajani",
                 "--perceptual-layers relu1_2,relu2_2,relu3_3,relu4_3"):
        assert text in out
