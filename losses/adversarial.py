"""The conditional GAN term: a PatchGAN judges (L, ab) pairs, as in pix2pix."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from losses.registry import LossOptions, register_loss
from models import build_discriminator

GAN_MODES = ("vanilla", "lsgan")


class GANLoss(nn.Module):
    """pix2pix's ``GANLoss(gan_mode)``: the loss of discriminator logits against a
    real/fake label of the logits' shape."""

    def __init__(self, gan_mode: str = "vanilla"):
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"unknown --gan-mode {gan_mode!r}; choose one of: {', '.join(GAN_MODES)}")
        self.gan_mode = gan_mode
        self.criterion = F.binary_cross_entropy_with_logits if gan_mode == "vanilla" else F.mse_loss

    def forward(self, logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        logits = logits.float()
        target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
        return self.criterion(logits, target)


class AdversarialLoss(nn.Module):
    def __init__(self, discriminator: nn.Module, criterion: GANLoss):
        super().__init__()
        self.discriminator = discriminator
        self.criterion = criterion

    def forward(self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.discriminator(torch.cat([L, fake_ab], 1)), True)

    def discriminator_loss(self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
        # Fake and real go through D separately, as in pix2pix, so BatchNorm statistics
        # are never mixed across the two.
        fake = self.criterion(self.discriminator(torch.cat([L, fake_ab.detach()], 1)), False)
        real = self.criterion(self.discriminator(torch.cat([L, real_ab], 1)), True)
        return 0.5 * (fake + real)


@register_loss(
    "gan",
    "conditional GAN: a PatchGAN discriminator sees L+ab (--gan-mode vanilla|lsgan)",
    reference="Isola et al., pix2pix, CVPR 2017",
    defaults="PatchGAN n_layers=3 nf=64, Adam 2e-4 betas (0.5, 0.999), D loss halved",
)
def gan(options: LossOptions) -> nn.Module:
    disc = build_discriminator(options.discriminator, in_channels=3)
    return AdversarialLoss(disc, GANLoss(options.gan_mode))
