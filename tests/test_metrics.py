import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.metrics import METRICS, psnr, ssim
from conftest import real_photos


def _pairs():
    rng = np.random.default_rng(0)
    out = []
    for img in real_photos()[:4]:
        gt = img[:96, :128].astype(np.float64) / 255
        pred = np.clip(gt + rng.normal(0, 0.05, gt.shape) + [0.03, -0.02, 0.0], 0, 1)
        out.append((pred, gt))
    return out


def _batch(arrays):
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def test_psnr_and_ssim_equal_skimage_on_real_photos():
    pairs = _pairs()
    pred, gt = _batch([p for p, _ in pairs]), _batch([g for _, g in pairs])
    ours_psnr, ours_ssim = psnr(pred, gt), ssim(pred, gt)
    for i, (p, g) in enumerate(pairs):
        p32, g32 = pred[i].permute(1, 2, 0).double().numpy(), gt[i].permute(1, 2, 0).double().numpy()
        ref_psnr = peak_signal_noise_ratio(g32, p32, data_range=1)
        ref_ssim = structural_similarity(
            g32, p32, data_range=1, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert ours_psnr[i].item() == pytest.approx(ref_psnr, abs=1e-4)
        assert ours_ssim[i].item() == pytest.approx(ref_ssim, abs=1e-4)


def test_identical_images_score_perfectly_and_metrics_declare_direction():
    x = _batch([g for _, g in _pairs()])
    assert torch.isinf(psnr(x, x)).all()
    assert ssim(x, x).tolist() == pytest.approx([1.0] * len(x))
    assert METRICS["psnr"].higher_is_better and METRICS["ssim"].higher_is_better
