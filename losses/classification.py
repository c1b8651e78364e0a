"""Zhang et al.'s rebalanced classification loss (ECCV 2016, "Colorful Image Colorization").

The generator predicts a distribution over Q in-gamut ab bins per pixel (see
``models/classifier.py``). The target is each true colour soft-encoded over its 5 nearest
bins; the cross-entropy of each pixel is weighted by how rare its colour is in the training
split, so the common desaturated colours stop dominating. The pure functions below are the
paper's equations; ``ClassificationLoss`` wires them to a run.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from colorbench_datasets.lab import AB_SCALE
from torch import nn
from torch.nn import functional as F

from losses.registry import LossOptions, register_loss
from models.ab_bins import ZHANG_GRID, ZHANG_TEMPERATURE, gamut_bins
from models.classifier import class_head


@dataclass(frozen=True)
class ZhangParams:
    """The paper's defaults (Section 2.2 and 3.1)."""

    grid: float = ZHANG_GRID  # ab bin size
    neighbours: int = 5  # soft-encoding over the 5 nearest bins ...
    sigma: float = 5.0  # ... with a Gaussian of this width, in ab units
    prior_sigma: float = 5.0  # smoothing of the empirical colour distribution
    mix: float = 0.5  # lambda: weight of the uniform distribution in the rebalancing
    temperature: float = ZHANG_TEMPERATURE  # annealed-mean decoding


ZHANG = ZhangParams()


def _squared_distances(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """(P,2) points x (Q,2) bins -> (P,Q) squared distances, as one matmul."""
    return (ab.pow(2).sum(1, keepdim=True) - 2 * ab @ bins.T + bins.pow(2).sum(1)).clamp(min=0)


def soft_encode(
    ab: torch.Tensor, bins: torch.Tensor, neighbours: int = 5, sigma: float = 5.0, chunk: int = 1 << 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zhang's soft-encoding of ground-truth colours: ``ab`` (N,2,H,W) in Lab units ->
    (indices, weights), each (N,K,H,W): the K nearest bins, nearest first, and Gaussian
    weights on their distances that sum to 1 per pixel.

    Sparse (K of Q) rather than a dense (N,Q,H,W) target, so a 32x64x64 batch needs a few MB,
    not hundreds.
    """
    n, _, h, w = ab.shape
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
    bins = bins.to(points)
    idx, dist = [], []
    for part in points.split(chunk):
        d2, i = _squared_distances(part, bins).topk(neighbours, dim=1, largest=False, sorted=True)
        idx.append(i)
        dist.append(d2)
    idx, d2 = torch.cat(idx), torch.cat(dist)
    # Subtracting the nearest distance before exp() changes nothing after normalising but
    # keeps far-out-of-gamut points from underflowing to 0/0.
    weights = torch.softmax(-(d2 - d2[:, :1]) / (2 * sigma**2), dim=1)

    def image_shaped(t):
        return t.reshape(n, h, w, neighbours).permute(0, 3, 1, 2)

    return image_shaped(idx), image_shaped(weights)


def nearest_bin(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """(N,2,H,W) Lab-unit ab -> (N,H,W) index of the nearest bin (the hard quantisation)."""
    idx, _ = soft_encode(ab, bins, neighbours=1, sigma=1.0)
    return idx[:, 0]


def empirical_distribution(ab: torch.Tensor, bins: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """(Q,) fraction of the pixels of ``ab`` (N,2,H,W, Lab units) whose nearest bin is q."""
    counts = torch.zeros(len(bins), dtype=torch.float64, device=ab.device)
    for part in ab.split(chunk):
        counts += torch.bincount(nearest_bin(part, bins).flatten(), minlength=len(bins)).to(counts)
    if counts.sum() == 0:
        raise ValueError("the empirical colour distribution needs at least one training pixel")
    return counts / counts.sum()


def smooth_distribution(p: torch.Tensor, bins: torch.Tensor, sigma: float) -> torch.Tensor:
    """``p`` (Q,) blurred over the ab plane by a Gaussian of ``sigma`` ab units and
    re-normalised over the in-gamut bins (mass blurred out of gamut is dropped, as when the
    paper filters its histogram). ``sigma = 0`` returns ``p`` unchanged."""
    if sigma == 0:
        return p.clone()
    b = bins.to(p)
    kernel = torch.exp(-_squared_distances(b, b) / (2 * sigma**2))
    smoothed = kernel @ p
    return smoothed / smoothed.sum()


def rebalancing_weights(smoothed: torch.Tensor, mix: float = 0.5) -> torch.Tensor:
    """Zhang's eq. 4: ``w ∝ ((1 - λ) p̃ + λ / Q)^-1``, normalised so that
    ``E_p̃[w] = Σ_q p̃_q w_q = 1`` -- the loss keeps the scale of an unweighted one, so its
    weight in a combination like ``classification+gan`` means what it says."""
    if not 0 <= mix <= 1:
        raise ValueError(f"the uniform mix lambda must be in [0, 1], got {mix}")
    if mix == 0 and (smoothed == 0).any():
        raise ValueError("lambda = 0 with empty bins gives infinite weights; use lambda > 0")
    w = 1 / ((1 - mix) * smoothed + mix / len(smoothed))
    return w / (smoothed * w).sum()


def rebalanced_cross_entropy(
    logits: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """Eq. 2: per-pixel cross-entropy against the soft-encoded target, times the
    rebalancing weight of the pixel's nearest bin, averaged over pixels."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    ce = -(weights * log_probs.gather(1, idx)).sum(1)
    return (class_weights.to(ce)[idx[:, 0]] * ce).mean()


class ClassificationLoss(nn.Module):
    """The classification term. ``prepare(train)`` (called by the trainer once per cell, as
    the registration declares ``needs_data``) fits the rebalancing weights to the training
    split; ``forward`` scores the class logits the generator's head gave for this batch
    (its declared ``generator_head`` output, passed by the trainer), and ignores the
    decoded ``fake_ab`` (which other terms, e.g. a GAN, see)."""

    def __init__(self, params: ZhangParams = ZHANG):
        super().__init__()
        self.params = params
        self.register_buffer("bins", gamut_bins(params.grid).float())
        self.register_buffer("class_weights", torch.ones(len(self.bins)))

    def prepare(self, train) -> None:
        p = empirical_distribution(train.ab.to(self.bins.device) * AB_SCALE, self.bins)
        smoothed = smooth_distribution(p, self.bins.double(), self.params.prior_sigma)
        self.class_weights = rebalancing_weights(smoothed, self.params.mix).float()

    def forward(
        self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        if logits.shape[1] != len(self.bins):
            raise ValueError(
                f"the classification loss needs {len(self.bins)} class logits per pixel (the generator's class "
                f"head), got {logits.shape[1]} channels"
            )
        idx, weights = soft_encode(
            real_ab.float() * AB_SCALE, self.bins, self.params.neighbours, self.params.sigma
        )
        return rebalanced_cross_entropy(logits, idx, weights, self.class_weights)


@register_loss(
    "classification",
    "Zhang's rebalanced multinomial classification over in-gamut ab bins; the generator "
    "outputs Q logits, decoded to ab by the annealed mean",
    reference="Zhang, Isola & Efros, Colorful Image Colorization, ECCV 2016",
    defaults=(
        f"ab grid {ZHANG.grid:g} (Q = the cells the sRGB gamut reaches: 261; the paper's table has 313), "
        f"soft-encoding over "
        f"{ZHANG.neighbours} nearest bins with sigma {ZHANG.sigma:g}, rebalancing from the training "
        f"split: prior smoothed sigma {ZHANG.prior_sigma:g}, lambda {ZHANG.mix:g}, E[w] = 1; "
        f"annealed mean T = {ZHANG.temperature:g}"
    ),
    generator_head=class_head(ZHANG.grid, ZHANG.temperature),
    needs_data=True,
)
def classification(options: LossOptions) -> nn.Module:
    return ClassificationLoss(ZHANG)
