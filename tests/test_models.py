import pytest
import torch

from models import DISCRIMINATORS, GENERATORS, UnetGenerator, build_discriminator, build_generator, unet_depth


@pytest.mark.parametrize("name", ["unet", "resunet"])
@pytest.mark.parametrize("size", [32, 64, 96])
def test_generators_map_L_to_ab_in_range(name, size):
    G = build_generator(name, size, width=8)
    out = G(torch.randn(2, 1, size, size))
    assert out.shape == (2, 2, size, size)
    assert out.abs().max() <= 1


def test_depth_follows_size_as_pix2pix():
    assert unet_depth(256) == 8 and unet_depth(64) == 6 and unet_depth(32) == 5 and unet_depth(96) == 5
    for bad in (48, 50, 16):
        with pytest.raises(ValueError, match="multiples of 32"):
            unet_depth(bad)


def test_unet_has_the_tutorials_structure_at_256():
    G = UnetGenerator(1, 2, n_down=8, nf=64)
    dropouts = [m for m in G.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 3 and all(d.p == 0.5 for d in dropouts)
    downs = [m for m in G.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(downs) == 8 and downs[0].in_channels == 1


def test_patchgan_is_70x70_with_no_norm_on_first_layer():
    D = build_discriminator("patchgan", in_channels=3)
    layers = list(D.model)
    assert isinstance(layers[0], torch.nn.Conv2d) and isinstance(layers[1], torch.nn.LeakyReLU)
    assert D(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 30x30 patches of 70x70


def test_init_is_normal_0_02_and_seeded():
    torch.manual_seed(0)
    a = build_generator("unet", 64, width=16)
    torch.manual_seed(0)
    b = build_generator("unet", 64, width=16)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    conv = next(m for m in a.modules() if isinstance(m, torch.nn.Conv2d))
    assert 0.015 < conv.weight.std().item() < 0.025


def test_registries_and_unknown_names():
    assert {"unet", "resunet"} <= set(GENERATORS) and "patchgan" in DISCRIMINATORS
    with pytest.raises(ValueError, match="resunet, unet"):
        build_generator("vit", 64)
