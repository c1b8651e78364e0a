import numpy as np
import pytest
import torch
from skimage import color

from colorbench_datasets.lab import denormalize_lab, lab_to_rgb, model_to_rgb, normalize_lab, rgb_to_lab
from conftest import real_photos


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).double() / 255


@pytest.mark.parametrize("index", range(6))
def test_rgb_to_lab_matches_skimage_on_real_photos(index):
    img = real_photos()[index]
    ours = rgb_to_lab(_t(img)).permute(1, 2, 0).numpy()
    ref = color.rgb2lab(img)
    assert np.abs(ours - ref).max() < 1e-3


@pytest.mark.parametrize("index", range(6))
def test_lab_to_rgb_matches_skimage_on_real_photos(index):
    lab = color.rgb2lab(real_photos()[index])
    ours = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    assert np.abs(ours - color.lab2rgb(lab)).max() < 1e-3


def test_out_of_gamut_lab_clips_like_skimage():
    rng = np.random.default_rng(0)
    lab = np.stack([rng.uniform(0, 100, (32, 32)), rng.uniform(-110, 110, (32, 32)), rng.uniform(-110, 110, (32, 32))], -1)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = color.lab2rgb(lab)
    ours = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() < 1e-3


def test_normalisation_is_the_tutorials_and_inverts():
    lab = torch.tensor([50.0, 110.0, -55.0]).view(3, 1, 1)
    L, ab = normalize_lab(lab)
    assert L.item() == pytest.approx(0.0) and ab.flatten().tolist() == pytest.approx([1.0, -0.5])
    assert torch.allclose(denormalize_lab(L, ab), lab)


def test_model_to_rgb_is_differentiable_without_nans():
    L = torch.rand(2, 1, 8, 8) * 2 - 1
    ab = (torch.rand(2, 2, 8, 8) * 2 - 1).requires_grad_(True)
    model_to_rgb(L, ab).sum().backward()
    assert torch.isfinite(ab.grad).all() and ab.grad.abs().sum() > 0
