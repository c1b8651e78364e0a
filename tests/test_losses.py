import pytest
import torch
from click.testing import CliRunner

from conftest import logged_warnings
from bench.cli import main
from losses import LOSSES, LossOptions, LossSpecError, parse_losses, register_loss
from losses.registry import Combination, Term


def test_builtin_losses_are_registered_and_listed():
    assert {"mse", "l1", "perceptual", "gan"} <= set(LOSSES)
    out = CliRunner().invoke(main, ["losses"]).output
    for name in ("mse", "l1", "perceptual", "gan"):
        assert name in out


def test_register_loss_adds_a_new_term_and_rejects_duplicates():
    @register_loss("test_zero", "always zero")
    def _zero(options):
        return torch.nn.Identity()

    try:
        # terms in canonical order: alphabetical, adversarial ones last
        assert parse_losses("test_zero+l1")[0].terms == (Term("l1"), Term("test_zero"))
        with pytest.raises(ValueError, match="twice"):
            register_loss("test_zero", "again")(_zero)
    finally:
        LOSSES.pop("test_zero")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("mse", ["mse"]),
        ("mse,l1,perceptual,gan", ["mse", "l1", "perceptual", "gan"]),
        ("100*l1+gan", ["100*l1+gan"]),
        ("l1+0.1*perceptual", ["l1+0.1*perceptual"]),
        (" l1 , 1e2*l1 + gan ", ["l1", "100*l1+gan"]),
        ("1*l1", ["l1"]),
    ],
)
def test_good_specs_parse_in_order(spec, expected):
    assert [c.spec for c in parse_losses(spec)] == expected


def test_weights_are_parsed_as_numbers():
    (combo,) = parse_losses("100*l1+0.5*gan")
    assert combo.terms == (Term("l1", 100.0), Term("gan", 0.5))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("l1+", "empty or malformed term"),
        ("*gan", "no weight before it"),
        ("0*l1", "positive"),
        ("-1*l1", "positive"),
        ("l1+l1", "appears twice"),
        ("l2", "unknown loss 'l2'.*valid losses: .*l1"),
        ("abc*l1", "not a number"),
        ("l1,,mse", "empty combination"),
        ("l1,l1", "listed twice"),
        ("", "empty"),
        ("inf*l1", "positive finite"),
        ("2*3*l1", "malformed"),
    ],
)
def test_bad_specs_name_the_bad_part(spec, message):
    with pytest.raises(LossSpecError, match=message):
        parse_losses(spec)


def test_fallback_tag_goes_into_every_name():
    combo = Combination((Term("l1"), Term("perceptual", 0.1))).tagged({"perceptual": "random-vgg", "lpips": "x"})
    assert combo.tags == {"perceptual": "random-vgg"}  # only its own terms' caveats
    assert combo.spec == "l1+0.1*perceptual"
    assert combo.name == "l1+0.1*perceptual[random-vgg]"


@pytest.mark.slow
def test_perceptual_offline_falls_back_loudly_or_fails_when_strict():
    from models.pretrained import WeightsUnavailable

    with logged_warnings("RANDOMLY INITIALISED VGG16"):
        term = LOSSES["perceptual"].factory(LossOptions())
    assert term.weights_tag == "random-vgg"
    L, ab = torch.zeros(2, 1, 32, 32), torch.rand(2, 2, 32, 32) - 0.5
    loss = term(L, ab.requires_grad_(True), torch.zeros_like(ab))
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(ab.grad).all()
    with pytest.raises(WeightsUnavailable, match="bench weights import vgg16-397923af.pth"):
        LOSSES["perceptual"].factory(LossOptions(strict_weights=True))


@pytest.mark.slow
def test_perceptual_runs_vgg_channels_last_and_computes_what_nchw_does():
    import copy

    with logged_warnings("RANDOMLY INITIALISED VGG16"):
        term = LOSSES["perceptual"].factory(LossOptions())
    assert term.features.slices[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    rgb = torch.rand(2, 3, 32, 32)
    features = term.features(rgb)
    assert all(f.is_contiguous(memory_format=torch.channels_last) and f.shape[1] > 1 for f in features)
    nchw = copy.deepcopy(term.features).to(memory_format=torch.contiguous_format)
    nchw.memory_format = torch.contiguous_format
    for f, reference in zip(features, nchw(rgb)):
        assert reference.is_contiguous()
        torch.testing.assert_close(f, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_perceptual_uses_cached_imagenet_weights_when_present(tmp_path):
    """A file in the hub cache under the real name is loaded (no fallback tag)."""
    from torchvision.models import vgg16

    from conftest import place_in_cache
    from losses.perceptual import vgg16_features

    net = vgg16(weights=None)
    place_in_cache("vgg16", net.state_dict())
    vgg16_features.cache_clear()
    term = LOSSES["perceptual"].factory(LossOptions())
    assert term.weights_tag is None
    assert torch.equal(term.features.slices[0][0].weight, net.features[0].weight)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan"])
def test_gan_term_gives_generator_and_discriminator_losses(mode):
    term = LOSSES["gan"].factory(LossOptions(gan_mode=mode))
    L, fake, real = torch.rand(2, 1, 64, 64), torch.rand(2, 2, 64, 64), torch.rand(2, 2, 64, 64)
    g = term(L, fake, real)
    d = term.discriminator_loss(L, fake, real)
    assert g.ndim == 0 and d.ndim == 0 and torch.isfinite(g) and torch.isfinite(d)


def test_unknown_gan_mode_is_refused():
    with pytest.raises(ValueError, match="gan-mode"):
        LOSSES["gan"].factory(LossOptions(gan_mode="nope"))
