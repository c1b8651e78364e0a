"""Val metrics as pure functions over batched tensors.

Each metric takes ``pred`` and ``target`` sRGB batches (N,3,H,W) in [0, 1] and returns one
value per image; the run reports the mean over images. ``METRICS`` records each metric's
direction for tables and plots.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    higher_is_better: bool
    description: str


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, as ``skimage.metrics.peak_signal_noise_ratio``."""
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def _gaussian_window(sigma: float, truncate: float, device, dtype) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM, as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, channel_axis=..., data_range=1)`` (Wang et al.).

    skimage filters with scipy's 3.5-sigma Gaussian and then drops a border of the window's
    radius, which is exactly a 'valid' convolution: no padding mode to match.
    """
    x, y = pred.double(), target.double()
    n, c, h, w = x.shape
    g = _gaussian_window(sigma, 3.5, x.device, x.dtype)
    k = g.numel()

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(n * c, 1, h, w) if t.dim() == 4 else t
        t = F.conv2d(t, g.view(1, 1, 1, k))
        return F.conv2d(t, g.view(1, 1, k, 1))

    flat = lambda t: t.reshape(n * c, 1, h, w)  # noqa: E731
    mx, my = blur(flat(x)), blur(flat(y))
    vx = blur(flat(x * x)) - mx * mx
    vy = blur(flat(y * y)) - my * my
    cxy = blur(flat(x * y)) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(n, c, -1).mean(-1).mean(-1).float()


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Per-image Hasler & Suesstrunk (2003) colourfulness of sRGB in [0, 1], on the 0-255
    scale the paper uses: sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)."""
    x = rgb.double() * 255
    r, g, b = x.unbind(-3)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return (std + 0.3 * mean).float()


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("psnr", psnr, True, "peak signal-to-noise ratio on sRGB, dB"),
        Metric("ssim", ssim, True, "structural similarity on sRGB (Gaussian, sigma 1.5)"),
    )
}


def score_batch(pred: torch.Tensor, target: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
    """Every per-image metric for one batch: name -> (N,) tensor."""
    return {name: METRICS[name].fn(pred, target) for name in (names or METRICS)}
