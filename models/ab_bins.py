"""Quantised ab colour space, as Zhang et al. (ECCV 2016) use it: the in-gamut bins of a
regular ab grid, and the annealed-mean decoding of a distribution over those bins.

Everything here is in Lab units (a, b roughly in [-110, 110]), not the model's ab/110 scale.
"""
from __future__ import annotations

import functools

import torch
from colorbench_datasets.lab import rgb_to_lab
from torch.nn import functional as F

ZHANG_GRID = 10.0  # ab grid step of the paper
ZHANG_TEMPERATURE = 0.38  # the paper's annealed-mean temperature


def cube_surface(levels: int = 256) -> torch.Tensor:
    """(6 * levels^2, 3) sRGB colours on the faces of the RGB cube, ``levels`` per edge.

    The ab footprint of the sRGB gamut is the ab footprint of the cube's surface: any line
    of constant ab that meets the gamut solid meets its boundary too. So the surface's 8-bit
    colours (levels=256) give the ab extent of every 8-bit colour a photo can hold, in 0.4 M
    conversions instead of 16.7 M.
    """
    t = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    u, v = (x.flatten() for x in torch.meshgrid(t, t, indexing="ij"))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            channels = [u, v]
            channels.insert(axis, torch.full_like(u, value))
            faces.append(torch.stack(channels, 1))
    return torch.cat(faces)


@functools.lru_cache(maxsize=None)
def _gamut_bins(grid: float) -> torch.Tensor:
    rgb = cube_surface()
    ab = rgb_to_lab(rgb[:, :, None, None])[:, 1:, 0, 0]  # the image-shaped conversion, 1x1 images
    cells = torch.unique(torch.round(ab / grid).long(), dim=0)  # sorted by (a, b)
    return cells.double() * grid


def gamut_bins(grid: float = ZHANG_GRID) -> torch.Tensor:
    """(Q, 2) centres of the ab grid cells (step ``grid``, centred on multiples of it) that
    some sRGB colour falls in: the in-gamut bins, computed rather than read from a table.
    Sorted by (a, b); computed once per process.

    With skimage's D65 Lab and grid 10 this gives Q = 261. Zhang et al. report 313 for
    their table, which therefore reaches somewhat beyond the sRGB gamut; bins no photo can
    fill only add classes that are never a target.
    """
    if not grid > 0:
        raise ValueError(f"the ab grid step must be positive, got {grid}")
    return _gamut_bins(float(grid)).clone()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, temperature: float) -> torch.Tensor:
    """Zhang's decoding: the mean of the class distribution re-normalised as
    ``softmax(log p / T)``. ``logits`` (N,Q,H,W), ``bins`` (Q,2) -> ab (N,2,H,W).

    T = 1 is the mean (desaturated), T -> 0 the mode (colourful, patchy); 0.38 is the
    paper's compromise. ``softmax(log softmax(z) / T) == softmax(z / T)``, so the logits are
    scaled directly.
    """
    if not temperature > 0:
        raise ValueError(f"annealed-mean temperature must be > 0, got {temperature}")
    probs = torch.softmax(logits.float() / temperature, dim=1)
    # The expectation over bins as a 1x1 convolution: faster than einsum on CPU.
    return F.conv2d(probs, bins.to(probs).T[:, :, None, None])
