"""Per-pixel regression losses on the normalised ab channels."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from losses.registry import LossOptions, register_loss


class PixelLoss(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
        return self.fn(fake_ab, real_ab)


@register_loss("mse", "mean squared error on ab (the regression baseline; tends to desaturate)")
def mse(options: LossOptions) -> nn.Module:
    return PixelLoss(F.mse_loss)


@register_loss(
    "l1",
    "mean absolute error on ab (pix2pix's reconstruction term)",
    reference="Isola et al., CVPR 2017",
)
def l1(options: LossOptions) -> nn.Module:
    return PixelLoss(F.l1_loss)
