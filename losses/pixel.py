"""Per-pixel regression losses on the normalised ab channels."""
from __future__ import annotations

import functools

import torch
from colorbench_datasets.lab import AB_SCALE
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


# Huber's transition point, in Lab ab units: errors below it (subtle tints) are penalised
# quadratically, larger ones like L1. Expressed in ab units because the model's ab/110
# scale would make PyTorch's default (1.0) an MSE in all but name.
HUBER_DELTA_AB = 10.0


@register_loss(
    "huber",
    "smooth L1 on ab: quadratic below delta, L1 (same slope and scale) above",
    reference="Huber, Ann. Math. Statist. 1964; smooth L1 as in Girshick, Fast R-CNN, ICCV 2015",
    defaults=f"delta = {HUBER_DELTA_AB:g} ab units (= {HUBER_DELTA_AB / AB_SCALE:.4g} on the model's ab/110 scale)",
)
def huber(options: LossOptions) -> nn.Module:
    return PixelLoss(functools.partial(F.smooth_l1_loss, beta=HUBER_DELTA_AB / AB_SCALE))
