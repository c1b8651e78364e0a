"""Val metrics as pure functions over batched tensors, and the registry that scores them.

Every metric is registered once (``register_metric``) as one of three kinds, with what it
needs declared, so ``bench.score.scorer.Scorer`` holds no metric names:

* ``PER_IMAGE``: ``fn(pred, target, batch) -> (N,)`` on sRGB batches (N,3,H,W) in [0, 1]; a run
  reports the mean over images (or, with ``pool_weight``, a weighted mean): ``psnr``, ``ssim``,
  ``lpips`` (network ``"lpips-net"``), ``de00``, ``cf``, ``auc``, ``auc_rebal`` (needs
  ``"val_ab"``, the val set's colour distribution; its set value weights each image by its
  share of the rebalancing weight, so it equals the AuC of all val pixels pooled).
* ``SET``: ``fn(features_pred, features_real) -> scalar`` on the features of the whole val
  split made by the declared network: ``fid`` and ``kid`` on Inception pool features.
* ``DERIVED``: ``fn(pred_values, truth_values, protocol) -> scalar`` from other metrics' per-image values
  (``needs`` names them) of the predictions and of the val photos: ``delta_cf`` from ``cf``.

Descriptive metrics (``higher_is_better=None``) are also scored on the val photos themselves
(the ground truth a model is read against). The registry's order is metrics.csv's order.

Nothing here loads a file or a network: ``models.metric_nets`` builds the networks the
registered metrics declare and ``bench.score.scorer`` feeds them in, so every function is
testable with small tensors.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch
from colorbench_datasets.lab import rgb_to_lab

from bench.config.machine import package_version
from bench.config.plugins import declarer
from bench.score import stats
from bench.score.presets import PRESETS, ScoringProtocol

PER_IMAGE, SET, DERIVED = "per_image", "set", "derived"


KINDS = (PER_IMAGE, SET, DERIVED)


@dataclass(frozen=True)
class Metric:
    name: str
    # PER_IMAGE: fn(pred, target, batch) -> (N,); SET: fn(features_pred, features_real) -> ();
    # DERIVED: fn(pred_values, truth_values, protocol) -> (), each a dict name -> (N,) per-image
    # values, ``protocol`` the run's ``ScoringProtocol`` (which variant).
    fn: Callable[..., torch.Tensor]
    # True or False ranks the metric; None makes it descriptive: read against the ground
    # truth's value, never ranked (more colour is not better colour, see ``cf``).
    higher_is_better: bool | None
    description: str
    kind: str = PER_IMAGE
    # The network it cannot be computed without, a key of ``models.metric_nets.NETWORKS``
    # (PER_IMAGE: ``batch.net(key)``; SET: the network that makes the features).
    network: str | None = None
    # PER_IMAGE: val-set statistics it reads from ``Batch`` ("val_ab": ``batch.cell_weights``,
    # the val set's ab distribution); DERIVED: the per-image metrics it is computed from.
    needs: tuple[str, ...] = ()
    # PER_IMAGE: each val image's weight in the set value, fn(batch of the photos) -> (N,);
    # None: the plain mean over images.
    pool_weight: Callable[["Batch"], torch.Tensor] | None = None
    min_images: int = 1  # SET: fewer val images leave it NaN, noted
    # How it was computed, for config.json's protocol and the report's "how the numbers were
    # made": a line, or ``fn(scorer) -> dict`` for facts known at scoring time.
    protocol: str | Callable[..., dict] = ""
    # DERIVED: its value on photo resamples for the paired tests, vectorised:
    # ``fn(pred, truth, counts, protocol) -> (B, S)`` with ``pred`` {need: (S, N)} per seed and
    # photo, ``truth`` {need: (N,)} and ``counts`` (B, N) the resamples' photo counts. None:
    # ``fn`` itself, once per resample (``resampled``).
    resample: Callable[..., np.ndarray] | None = None

    def derive(self, pred: dict, truth: dict, protocol: ScoringProtocol = PRESETS["colorbench"]) -> torch.Tensor:
        """A DERIVED metric's value; ``fn`` gets the protocol if it takes a third argument
        (a plugin's two-argument ``fn(pred, truth)`` keeps working)."""
        return self.fn(pred, truth, protocol) if _takes_protocol(self.fn) else self.fn(pred, truth)

    def resampled(self, pred: dict, truth: dict, counts: np.ndarray,
                  protocol: ScoringProtocol = PRESETS["colorbench"]) -> np.ndarray:
        """A DERIVED metric's (B, S) values on the photo resamples ``counts`` (B, N), under ``protocol``."""
        if self.resample is not None:
            if _takes_protocol(self.resample, 3):
                return self.resample(pred, truth, counts, protocol)
            return self.resample(pred, truth, counts)
        seeds = len(next(iter(pred.values())))
        out = np.empty((len(counts), seeds))
        for b, row in enumerate(counts):
            take = torch.from_numpy(np.repeat(np.arange(len(row)), row.astype(int)))
            resampled_truth = {n: torch.from_numpy(np.asarray(v, float))[take] for n, v in truth.items()}
            for s in range(seeds):
                values = {n: torch.from_numpy(np.asarray(v[s], float))[take] for n, v in pred.items()}
                out[b, s] = float(self.derive(values, resampled_truth, protocol))
        return out


def _takes_protocol(fn, before: int = 2) -> bool:
    """Whether ``fn`` takes a protocol after its first ``before`` positional arguments."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > before or any(p.kind == p.VAR_POSITIONAL for p in params)


class Batch:
    """What a per-image metric may read about one batch besides ``pred`` and ``target``:
    their Lab (converted once per batch, on first use), the networks, the val set's
    statistics and the scoring protocol (``bench.score.presets``: which variant of a metric)."""

    def __init__(self, pred: torch.Tensor, target: torch.Tensor, nets=None, cell_weights: torch.Tensor | None = None,
                 protocol: ScoringProtocol = PRESETS["colorbench"]):
        self.pred, self.target, self.nets, self._cell_weights = pred, target, nets, cell_weights
        self.protocol = protocol

    @cached_property
    def lab_pred(self) -> torch.Tensor:
        return rgb_to_lab(self.pred.double())

    @cached_property
    def lab_target(self) -> torch.Tensor:
        return rgb_to_lab(self.target.double())

    def net(self, key: str):
        net = None if self.nets is None else self.nets.get(key)
        if net is None:
            raise LookupError(f"network {key!r} is not loaded")
        return net

    @property
    def cell_weights(self) -> torch.Tensor:
        """``ab_cell_weights`` of the val photos (declared as ``needs=("val_ab",)``)."""
        if self._cell_weights is None:
            raise LookupError("the val set's ab cell weights were not given")
        return self._cell_weights


# What the val set provides to per-image metrics that declare it (``Batch``): "val_ab", the
# photos' ab distribution as ``ab_cell_weights``.
VAL_STATISTICS = ("val_ab",)


# name -> Metric, in registration order (metrics.csv's order)
METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, higher_is_better: bool | None, description: str, kind: str = PER_IMAGE,
                    network: str | None = None, needs=(), pool_weight=None, min_images: int = 1,
                    protocol: str | Callable[..., dict] = "", resample=None):
    """Decorator registering ``fn`` as the metric ``name`` (see ``Metric`` for the arguments);
    returns ``fn`` unchanged. A new metric is this and nothing else: ``Scorer``, the run's
    files, the report and ``bench compare`` take it from ``METRICS``."""
    if kind not in KINDS:
        raise ValueError(f"metric {name}: kind {kind!r}, expected one of {', '.join(KINDS)}")
    if name in METRICS:
        raise ValueError(f"metric {name} is already registered")
    if kind == SET and network is None:
        raise ValueError(f"set metric {name} must declare the network that makes its features")
    if kind == DERIVED and (not needs or any(METRICS.get(n) is None or METRICS[n].kind != PER_IMAGE for n in needs)):
        raise ValueError(f"derived metric {name} must declare the registered per-image metrics it is computed from")
    if kind == PER_IMAGE and set(needs) - set(VAL_STATISTICS):
        raise ValueError(f"metric {name} needs {', '.join(sorted(set(needs) - set(VAL_STATISTICS)))}; "
                         f"a per-image metric may need {', '.join(VAL_STATISTICS)}")

    def register(fn):
        METRICS[name] = Metric(name, fn, higher_is_better, description, kind, network, tuple(needs), pool_weight,
                               min_images, protocol, resample)
        return fn

    return register


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, crop_border: int = 0) -> torch.Tensor:
    """Per-image PSNR in dB, as ``skimage.metrics.peak_signal_noise_ratio``; ``crop_border``
    pixels at each edge left out first, as basicsr's ``calculate_psnr(img, img2, crop_border)``
    (DDColor's) does with ``img[crop_border:-crop_border, crop_border:-crop_border]``."""
    if crop_border:
        h, w = pred.shape[-2:]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"--psnr-crop-border {crop_border} leaves no pixel of {h}x{w} val images; use a smaller "
                             "border or a larger --size")
        pred = pred[..., crop_border:-crop_border, crop_border:-crop_border]
        target = target[..., crop_border:-crop_border, crop_border:-crop_border]
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def _gaussian_window(sigma: float, truncate: float, device, dtype) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _blur_valid(maps: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter over the last two axes, as shifted, weighted sums
    (in float64 on the CPU about twice as fast as ``conv2d``)."""
    weights = g.tolist()  # Python floats: no device sync per tap on a GPU
    k = len(weights)
    w = maps.shape[-1] - k + 1
    out = maps[..., 0:w] * weights[0]
    for i in range(1, k):
        out.add_(maps[..., i : i + w], alpha=weights[i])
    h = out.shape[-2] - k + 1
    res = out[..., 0:h, :] * weights[0]
    for i in range(1, k):
        res.add_(out[..., i : i + h, :], alpha=weights[i])
    return res


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5,
         window: str = "gaussian") -> torch.Tensor:
    """Per-image SSIM, as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, channel_axis=..., data_range=1)`` (Wang et al.);
    ``window="uniform"``: skimage's defaults instead (7x7 uniform window, sample covariance),
    what CT2's ``compare_ssim(..., multichannel=True)`` computes.

    skimage filters (scipy's 3.5-sigma Gaussian, or a uniform filter) and then drops a border
    of the window's radius, which is exactly a 'valid' convolution: no padding mode to match.
    """
    x, y = pred.double(), target.double()
    if window == "uniform":
        g, cov_norm = torch.full((7,), 1 / 7, device=x.device, dtype=x.dtype), 49 / 48
    else:
        g, cov_norm = _gaussian_window(sigma, 3.5, x.device, x.dtype), 1.0
    # the five local statistics in one pass of the filter
    mx, my, xx, yy, xy = _blur_valid(torch.stack([x, y, x * x, y * y, x * y]), g)
    vx, vy, cxy = cov_norm * (xx - mx * mx), cov_norm * (yy - my * my), cov_norm * (xy - mx * my)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()  # channels and pixels: equal-sized, so the mean of means


def colorfulness(rgb: torch.Tensor, absolute: bool = False) -> torch.Tensor:
    """Per-image Hasler & Suesstrunk (2003) colourfulness of sRGB in [0, 1], on the 0-255
    scale the paper uses: sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2).

    ``absolute``: the variant of the widely copied code (DDColor's and CT2's), which takes
    |rg| and |yb| first: where a photo's opponent colours change sign their means no longer
    cancel and their spreads shrink, so it is another number (on the shared photos, lower)."""
    x = rgb.double() * 255
    r, g, b = x.unbind(-3)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    if absolute:
        rg, yb = rg.abs(), yb.abs()
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return (std + 0.3 * mean).float()


def cf(pred: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image colourfulness of the prediction (``target`` is ignored; the signature
    matches the other per-image metrics)."""
    return colorfulness(pred)


def _delta_cf_resampled(pred: dict, truth: dict, counts: np.ndarray, protocol: ScoringProtocol) -> np.ndarray:
    if protocol.delta_cf == "per-image":  # the mean of |per-image differences|: a plain per-image mean
        return stats.Sample(np.abs(np.asarray(pred["cf"]) - np.asarray(truth["cf"]))).per_seed(counts)
    # |mean - mean of the reference| on each resample: stats.Sample's distance of means
    return stats.Sample(pred["cf"], reference=truth["cf"]).per_seed(counts)


def derived_from(name: str) -> list[str]:
    """The DERIVED metrics computed from the metric ``name`` (``cf`` -> ``delta_cf``)."""
    return [m.name for m in METRICS.values() if m.kind == DERIVED and name in m.needs]


def delta_cf(cf_pred: torch.Tensor, cf_target: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """|mean CF of the predictions - mean CF of the ground truth|, over the whole set.

    By default the difference of the means, not the mean of per-image differences: like
    DDColor's ΔCF it asks whether a model is globally washed out (regression losses) or
    over-saturated, not whether each image got its own amount of colour (which PSNR, ΔE00
    and AuC already measure). ``per_image``: the mean of |CF(prediction) - CF(photo)|, the
    other aggregation in print, which is never smaller. Lower is better.
    """
    if per_image:
        return (cf_pred.double() - cf_target.double()).abs().mean().float()
    return (cf_pred.double().mean() - cf_target.double().mean()).abs().float()


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 colour difference per pixel of Lab tensors (...,3,H,W) -> (...,H,W).

    A line-by-line port of ``skimage.color.deltaE_ciede2000`` (kL = kC = kH = 1), including
    its conventions for zero chroma, so the two agree to floating-point precision.
    """
    L1, a1, b1 = lab1.double().unbind(-3)
    L2, a2, b2 = lab2.double().unbind(-3)
    two_pi = 2 * math.pi
    # Distort a by the mean chroma; everything after works in these "prime" coordinates.
    cbar = 0.5 * (torch.hypot(a1, b1) + torch.hypot(a2, b2))
    c7 = cbar**7
    scale = 1 + 0.5 * (1 - torch.sqrt(c7 / (c7 + 25.0**7)))

    def polar(x, y):
        h = torch.atan2(y, x)
        return torch.hypot(x, y), torch.where(h < 0, h + two_pi, h)

    C1, h1 = polar(a1 * scale, b1)
    C2, h2 = polar(a2 * scale, b2)

    lbar = 0.5 * (L1 + L2)
    tmp = (lbar - 50) ** 2
    L_term = (L2 - L1) / (1 + 0.015 * tmp / torch.sqrt(20 + tmp))

    cbar = 0.5 * (C1 + C2)
    C_term = (C2 - C1) / (1 + 0.045 * cbar)

    h_diff, h_sum, CC = h2 - h1, h1 + h2, C1 * C2
    # torch.where, not `2pi * mask`: a bool mask times a Python float is float32 in torch.
    dH = torch.where(h_diff > math.pi, h_diff - two_pi, torch.where(h_diff < -math.pi, h_diff + two_pi, h_diff))
    dH = torch.where(CC == 0, torch.zeros_like(dH), dH)
    dH_term = 2 * torch.sqrt(CC) * torch.sin(dH / 2)

    wrap = (CC != 0) & (h_diff.abs() > math.pi)
    hbar = torch.where(wrap, torch.where(h_sum < two_pi, h_sum + two_pi, h_sum - two_pi), h_sum)
    hbar = torch.where(CC == 0, hbar * 2, hbar) * 0.5

    T = (
        1
        - 0.17 * torch.cos(hbar - math.radians(30))
        + 0.24 * torch.cos(2 * hbar)
        + 0.32 * torch.cos(3 * hbar + math.radians(6))
        - 0.20 * torch.cos(4 * hbar - math.radians(63))
    )
    H_term = dH_term / (1 + 0.015 * cbar * T)

    c7 = cbar**7
    rc = 2 * torch.sqrt(c7 / (c7 + 25.0**7))
    dtheta = math.radians(30) * torch.exp(-(((torch.rad2deg(hbar) - 275) / 25) ** 2))
    R_term = -torch.sin(2 * dtheta) * rc * C_term * H_term

    return torch.sqrt((L_term**2 + C_term**2 + H_term**2 + R_term).clamp(min=0))


def de00(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean CIEDE2000 between the images as shown (sRGB -> Lab), as
    ``skimage.color.deltaE_ciede2000(rgb2lab(target), rgb2lab(pred)).mean()``."""
    return de00_lab(rgb_to_lab(pred.double()), rgb_to_lab(target.double()))


def de00_lab(lab_pred: torch.Tensor, lab_target: torch.Tensor) -> torch.Tensor:
    return ciede2000(lab_target, lab_pred).flatten(1).mean(1).float()


AUC_MAX_THRESHOLD = 150


def auc(pred: torch.Tensor, target: torch.Tensor, max_threshold: int = AUC_MAX_THRESHOLD) -> torch.Tensor:
    """Zhang et al. (2016)'s AuC, per image, in percent.

    The fraction of pixels whose ab error ``||ab_pred - ab_gt||_2`` is at most ``t``, for
    integer thresholds t = 0..150, integrated over t (trapezoid rule) and divided by 150.
    ab comes from the sRGB images as shown, so out-of-gamut predictions count as the colour
    they clip to. All val images have the same size, so the mean over images equals the
    AuC of all val pixels pooled.
    """
    return auc_lab(rgb_to_lab(pred.double()), rgb_to_lab(target.double()), max_threshold)


def auc_lab(
    lab_pred: torch.Tensor, lab_target: torch.Tensor, max_threshold: int = AUC_MAX_THRESHOLD,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    err = (lab_pred[:, 1:] - lab_target[:, 1:]).pow(2).sum(1).sqrt().flatten(1)  # (N, pixels)
    weights = torch.ones_like(err) if pixel_weights is None else pixel_weights.flatten(1).to(err)
    # err <= t  <=>  ceil(err) <= t for integer t: one histogram of ceil(err) gives the
    # whole cumulative curve (bin max_threshold + 1 collects everything beyond).
    bins = err.ceil().clamp(max=max_threshold + 1).long()
    counts = torch.zeros(err.shape[0], max_threshold + 2, dtype=torch.float64, device=err.device)
    counts.scatter_add_(1, bins, weights)
    cdf = counts.cumsum(1)[:, : max_threshold + 1] / weights.sum(1, keepdim=True)
    area = 0.5 * (cdf[:, :-1] + cdf[:, 1:]).sum(1)
    return (100 * area / max_threshold).float()


# Zhang et al.'s ab grid (10 units, cells centred on multiples of 10, as ``models.ab_bins``);
# |a|, |b| <= 125 covers every sRGB colour (about 110 at most), so no colour is clipped.
AB_GRID = 10.0


AB_HALF = 12


AB_CELLS = (2 * AB_HALF + 1) ** 2


def ab_cell(lab: torch.Tensor, grid: float = AB_GRID) -> torch.Tensor:
    """(N,3,H,W) Lab -> (N,H,W) index of each pixel's ab grid cell."""
    q = torch.round(lab[:, 1:] / grid).long().clamp(-AB_HALF, AB_HALF) + AB_HALF
    return q[:, 0] * (2 * AB_HALF + 1) + q[:, 1]


def ab_cell_counts(lab: torch.Tensor) -> torch.Tensor:
    """(AB_CELLS,) how many pixels of ``lab`` fall in each ab cell (float64)."""
    return torch.bincount(ab_cell(lab).flatten(), minlength=AB_CELLS).double()


def ab_cell_weights(counts: torch.Tensor) -> torch.Tensor:
    """Rebalancing weight per ab cell from its pixel count: 1 / (Q p_q) for the Q occupied
    cells, 0 for empty ones. Inversely proportional to the colour's probability, so every
    occupied colour class contributes equally (Zhang et al. 2016's rebalanced AuC), and
    normalised so the mean weight over the pixels counted is 1."""
    counts = counts.double()
    occupied = counts > 0
    p = counts / counts.sum()
    return torch.where(occupied, 1 / (occupied.sum() * p).clamp(min=1e-300), torch.zeros_like(p))


def pixel_weights(lab_target: torch.Tensor, cell_weights: torch.Tensor) -> torch.Tensor:
    """(N,H,W) each target pixel's rebalancing weight."""
    return cell_weights.to(lab_target.device)[ab_cell(lab_target)]


def auc_rebal_lab(lab_pred: torch.Tensor, lab_target: torch.Tensor, cell_weights: torch.Tensor,
                  max_threshold: int = AUC_MAX_THRESHOLD) -> torch.Tensor:
    return auc_lab(lab_pred, lab_target, max_threshold, pixel_weights(lab_target, cell_weights))


def auc_rebal(pred: torch.Tensor, target: torch.Tensor, cell_weights: torch.Tensor,
              max_threshold: int = AUC_MAX_THRESHOLD) -> torch.Tensor:
    """Zhang et al. (2016)'s class-rebalanced AuC, per image, in percent.

    As ``auc``, with each pixel weighted by the rarity of its true colour: ``cell_weights``
    (``ab_cell_weights`` of the val set's ab cell counts) on a 10-unit ab grid. Gray scores
    89.1 plain but 58.0 rebalanced in the paper's Table 1: rare, saturated colours are where
    a washed-out model fails. Per image it is the weighted AuC of that image's pixels; over
    a set, weight each image by ``image_weight`` to get the AuC of all pixels pooled.
    """
    return auc_rebal_lab(rgb_to_lab(pred.double()), rgb_to_lab(target.double()), cell_weights, max_threshold)


def image_weight(lab_target: torch.Tensor, cell_weights: torch.Tensor) -> torch.Tensor:
    """(N,) an image's mean pixel rebalancing weight: its share of the pooled ``auc_rebal``."""
    return pixel_weights(lab_target, cell_weights).flatten(1).mean(1)


def lpips(pred: torch.Tensor, target: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
    """Per-image LPIPS (Zhang et al. 2018) with the ``lpips`` package's network, which takes
    images in [-1, 1]."""
    return net(pred * 2 - 1, target * 2 - 1).flatten().float()


def _centered(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.double().flatten(1)
    if x.shape[0] < 2:
        raise ValueError(f"FID/KID need at least 2 images per set, got {x.shape[0]}")
    mu = x.mean(0)
    return mu, (x - mu) / math.sqrt(x.shape[0] - 1)


def _trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2 = tr sqrt(S1^1/2 S2 S1^1/2): symmetric
    eigendecompositions only, so no complex round-off and no scipy.linalg.sqrtm."""
    w, v = torch.linalg.eigh(sigma1)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T
    return torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0).sqrt().sum()


def fid(features_pred: torch.Tensor, features_real: torch.Tensor) -> torch.Tensor:
    """FID between two sets of Inception features (N, D), sample covariances (N-1).

    With fewer images than dimensions (242 val images, 2048 features) the covariances are
    low rank: writing S1 = A^T A, S2 = B^T B with A, B the centred, scaled features,
    tr sqrt(S1 S2) is the nuclear norm of A B^T, an N1 x N2 SVD instead of two D x D
    eigendecompositions -- exact, and much faster.
    """
    mu1, A = _centered(features_pred)
    mu2, B = _centered(features_real)
    if A.shape[0] * B.shape[0] <= A.shape[1] ** 2:
        tr_sqrt = torch.linalg.svdvals(A @ B.T).sum()
    else:
        tr_sqrt = _trace_sqrt_product(A.T @ A, B.T @ B)
    return ((mu1 - mu2).pow(2).sum() + A.pow(2).sum() + B.pow(2).sum() - 2 * tr_sqrt).float()


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 with the kernel k(a, b) = (a.b / D + 1)^3 (Bińkowski et al. 2018)."""
    x, y = x.double(), y.double()
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {m} and {n}")
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    return (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kid(
    features_pred: torch.Tensor, features_real: torch.Tensor, subset_size: int = 1000, subsets: int = 100, seed: int = 0
) -> torch.Tensor:
    """KID: the unbiased polynomial-kernel MMD^2 between two feature sets.

    Sets no larger than ``subset_size`` (every val split here) are compared whole, so the
    value is deterministic; larger ones average ``subsets`` random subsets of that size, as
    Bińkowski et al. do, with a fixed seed.
    """
    x, y = features_pred.flatten(1), features_real.flatten(1)
    if max(len(x), len(y)) <= subset_size:
        return polynomial_mmd2(x, y).float()
    gen = torch.Generator().manual_seed(seed)
    size = min(len(x), len(y), subset_size)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for _ in range(subsets):
        ix = torch.randperm(len(x), generator=gen)[:size].to(x.device)
        iy = torch.randperm(len(y), generator=gen)[:size].to(y.device)
        total += polynomial_mmd2(x[ix], y[iy])
    return (total / subsets).float()


def _psnr_protocol(scorer) -> str:
    border = scorer.protocol.psnr_crop_border
    return ("sRGB in [0, 1], data range 1, per image (all channels)"
            + (f", {border} px at each edge left out (crop_border {border})" if border else "") + ", mean over images")


register_metric("psnr", higher_is_better=True, description="peak signal-to-noise ratio on sRGB, dB",
                protocol=_psnr_protocol)(
    lambda pred, target, batch: psnr(pred, target, crop_border=batch.protocol.psnr_crop_border))


def _ssim_protocol(scorer) -> str:
    p = scorer.protocol
    window = ("7x7 uniform window, sample covariance (skimage's defaults)" if p.ssim_window == "uniform" else
              "Gaussian window sigma 1.5 truncated at 3.5 sigma, population covariance")
    return f"sRGB, {window}, K1 0.01, K2 0.03, data range {p.ssim_range:.6g}, per channel, mean over images"


register_metric("ssim", higher_is_better=True, description="structural similarity on sRGB (window: the protocol's)",
                protocol=_ssim_protocol)(
    lambda pred, target, batch: ssim(pred, target, batch.protocol.ssim_range, window=batch.protocol.ssim_window))


LPIPS_TRUNKS = {"alex": "torchvision AlexNet IMAGENET1K_V1 (alexnet-owt-7be5be79.pth)",
                "vgg": "torchvision VGG16 IMAGENET1K_V1 (vgg16-397923af.pth)"}


register_metric("lpips", higher_is_better=False, description="LPIPS distance (v0.1; trunk: the protocol's), mean over images",
                network="lpips-net", protocol=lambda scorer: {
                    "package": f"lpips {package_version('lpips')}", "net": scorer.protocol.lpips_net, "version": "0.1",
                    "trunk": LPIPS_TRUNKS[scorer.protocol.lpips_net],
                    "input": "sRGB scaled to [-1, 1] (2x - 1)", "spatial": False})(
    lambda pred, target, batch: lpips(pred, target, batch.net("lpips-net")))


def _fid_protocol(scorer) -> dict:
    p = scorer.protocol
    if p.fid_features == "torchvision":
        features = {
            "features": f"torchvision {package_version('torchvision')} inception_v3 IMAGENET1K_V1 "
                        "(inception_v3_google), blocks to the 2048-d average pool, as DDColor's/CT2's INCEPTION_V3_FID",
            "resize": f"images handed over in {p.fid_input}, bilinear to 299x299 (align_corners False), then "
                      "x/2 + 1/2 and x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5 with ImageNet's mean and std",
        }
    else:
        features = {
            "features": f"pytorch-fid {package_version('pytorch-fid')} InceptionV3, FID weights "
                        "pt_inception-2015-12-05, 2048-d pool3",
            "resize": "bilinear to 299x299 inside the network (align_corners False), input scaled to [-1, 1]",
        }
    return {**features, "images": len(scorer), "reference": "the val photos, prepared as above",
            "statistics": "float64 from features in memory, sample covariance (N - 1)"}


register_metric("fid", kind=SET, network="inception", min_images=2, higher_is_better=False,
                description="Fréchet Inception distance to the val photos (biased below a few thousand images)",
                protocol=_fid_protocol)(fid)


register_metric("kid", kind=SET, network="inception", min_images=2, higher_is_better=False,
                description="kernel Inception distance (unbiased cubic-kernel MMD^2) to the val photos",
                protocol=lambda scorer: {
                    "kernel": "(x.y / 2048 + 1)^3, unbiased MMD^2",
                    "subsets": "the whole set up to 1000 images, else 100 seeded subsets of 1000"})(kid)


register_metric("de00", higher_is_better=False, description="mean CIEDE2000 colour difference to the ground truth",
                protocol="CIEDE2000 (kL = kC = kH = 1) per pixel, skimage's Lab (D65), mean over pixels and images")(
    lambda pred, target, batch: de00_lab(batch.lab_pred, batch.lab_target))


register_metric("cf", higher_is_better=None,
                description="Hasler-Suesstrunk colourfulness of the predictions (descriptive: compare with "
                            "the ground truth's; delta_cf ranks the distance)",
                protocol=lambda scorer: "Hasler-Suesstrunk colourfulness on 0-255 sRGB, "
                                        + ("|rg| and |yb| (the absolute-value variant)" if scorer.protocol.cf_formula == "absolute"
                                           else "signed rg and yb (the paper's)") + ", mean over images")(
    lambda pred, target, batch: colorfulness(pred, batch.protocol.cf_formula == "absolute"))


register_metric("delta_cf", kind=DERIVED, needs=("cf",), higher_is_better=False,
                description="|mean CF of predictions - mean CF of ground truth| (or the protocol's aggregation)",
                protocol=lambda scorer: "mean over val photos of |cf(prediction) - cf(photo)|"
                if scorer.protocol.delta_cf == "per-image" else "|mean cf of the predictions - mean cf of the val photos|",
                resample=_delta_cf_resampled)(
    lambda pred, truth, protocol: delta_cf(pred["cf"], truth["cf"], protocol.delta_cf == "per-image"))


register_metric("auc", higher_is_better=True,
                description="Zhang et al.'s AuC of the per-pixel ab error, thresholds 0..150, percent",
                protocol=f"per-pixel ab error, cumulative curve at thresholds 0..{AUC_MAX_THRESHOLD} step 1, "
                         "trapezoid area, percent")(
    lambda pred, target, batch: auc_lab(batch.lab_pred, batch.lab_target))


register_metric("auc_rebal", higher_is_better=True, needs=("val_ab",),
                pool_weight=lambda batch: image_weight(batch.lab_target, batch.cell_weights),
                description="AuC with pixels weighted inversely to their colour's frequency in "
                            "the val set (10-unit ab grid; Zhang et al.'s class-rebalanced AuC), percent",
                protocol=lambda scorer: {
                    "weights": f"1 / frequency of the true colour's {AB_GRID:g}-unit ab cell among the val photos' "
                               "pixels (every occupied cell contributes equally), all val pixels pooled",
                    "occupied_cells": scorer.occupied_cells})(
    lambda pred, target, batch: auc_rebal_lab(batch.lab_pred, batch.lab_target, batch.cell_weights))


def score_batch(pred: torch.Tensor, target: torch.Tensor, names=None, cell_weights=None) -> dict[str, torch.Tensor]:
    """Every per-image metric that needs no network, for one batch: name -> (N,) tensor;
    the ones that need the val set's ab distribution only with its ``cell_weights``
    (``ab_cell_weights``)."""
    batch = Batch(pred, target, cell_weights=cell_weights)
    if names is None:
        names = [n for n, m in METRICS.items()
                 if m.kind == PER_IMAGE and m.network is None and (cell_weights is not None or "val_ab" not in m.needs)]
    return {name: METRICS[name].fn(pred, target, batch) for name in names}


@declarer("metrics")
def _declared_metrics() -> dict[str, dict]:
    """What a run records of each metric it scores (config.json's ``declared``): a report
    reads its arrows and verdicts from the registry, so one whose plugin now declares them
    otherwise is refused by name (bench/config/plugins.py)."""
    return {name: {"higher_is_better": m.higher_is_better, "kind": m.kind, "network": m.network,
                   "needs": list(m.needs), "min_images": m.min_images, "module": getattr(m.fn, "__module__", None)}
            for name, m in METRICS.items()}
