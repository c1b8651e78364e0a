"""CIE Lab <-> sRGB in torch, matching ``skimage.color`` (D65, 2° observer).

Differentiable, batched over ``(..., 3, H, W)`` tensors, so the perceptual loss and the
metrics can see a prediction in RGB without leaving the graph. The model works in the
reference tutorial's normalisation: ``L/50 - 1`` and ``ab/110``, both roughly in [-1, 1].
"""
from __future__ import annotations

import torch

# sRGB primaries -> XYZ, the matrix skimage uses.
_XYZ_FROM_RGB = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)

L_SCALE, L_SHIFT, AB_SCALE = 50.0, 1.0, 110.0


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix along the channel axis (dim -3)."""
    m = matrix.to(device=x.device, dtype=x.dtype)
    return torch.einsum("ij,...jhw->...ihw", m, x)


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(device=x.device, dtype=x.dtype).view(3, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> Lab (L in [0, 100], a/b roughly in [-110, 110])."""
    # Clamp inside the branches so neither pow ever sees a negative base (NaN gradients).
    linear = torch.where(
        rgb > 0.04045, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92
    )
    xyz = _mix(_XYZ_FROM_RGB, linear) / _per_channel(_WHITE_D65, rgb)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab -> sRGB clipped to [0, 1] (out-of-gamut colours clip, as in skimage)."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    fx = a / 500 + fy
    fz = (fy - b / 200).clamp(min=0)
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16 / 116) / 7.787)
    linear = _mix(_RGB_FROM_XYZ, xyz * _per_channel(_WHITE_D65, lab))
    rgb = torch.where(
        linear > 0.0031308,
        1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055,
        12.92 * linear,
    )
    return rgb.clamp(0, 1)


def normalize_lab(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab -> (L, ab) in the model's [-1, 1] scale."""
    return lab[..., :1, :, :] / L_SCALE - L_SHIFT, lab[..., 1:, :, :] / AB_SCALE


def denormalize_lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The model's (L, ab) -> Lab."""
    return torch.cat([(L + L_SHIFT) * L_SCALE, ab * AB_SCALE], dim=-3)


def model_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The model's (L, ab) -> sRGB in [0, 1]; differentiable."""
    return lab_to_rgb(denormalize_lab(L, ab))
