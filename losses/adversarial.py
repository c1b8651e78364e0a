"""The conditional GAN term: a PatchGAN judges (L, ab) pairs, as in pix2pix.

``--gan-mode`` picks the objective: pix2pix's ``vanilla`` (BCE), ``lsgan`` and ``wgangp``
(Wasserstein with gradient penalty), plus ``hinge`` (SAGAN / BigGAN's).
"""
from __future__ import annotations

import contextlib
import inspect
import logging

import torch
from torch import nn
from torch.nn import functional as F

from losses.registry import LossOptions, register_loss
from models import DISCRIMINATORS, build_discriminator

log = logging.getLogger("colorbench")

GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp")
GP_WEIGHT = 10.0  # Gulrajani et al.'s lambda, pix2pix's cal_gradient_penalty default


class GANLoss(nn.Module):
    """pix2pix's ``GANLoss(gan_mode)``, plus hinge: the loss of discriminator logits for a
    real/fake target. The discriminator's and the generator's loss differ for ``hinge``
    (the generator's is not clipped), hence ``for_discriminator``."""

    def __init__(self, gan_mode: str = "vanilla"):
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"unknown --gan-mode {gan_mode!r}; choose one of: {', '.join(GAN_MODES)}")
        self.gan_mode = gan_mode

    def forward(self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        logits = logits.float()
        if self.gan_mode in ("vanilla", "lsgan"):
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            criterion = F.binary_cross_entropy_with_logits if self.gan_mode == "vanilla" else F.mse_loss
            return criterion(logits, target)
        if self.gan_mode == "hinge" and for_discriminator:
            return F.relu(1 - logits).mean() if target_is_real else F.relu(1 + logits).mean()
        # wgangp (both players) and hinge's generator: raise the critic's score of the fakes.
        return -logits.mean() if target_is_real else logits.mean()


def gradient_penalty(
    discriminator: nn.Module, L: torch.Tensor, real_ab: torch.Tensor, fake_ab: torch.Tensor, weight: float = GP_WEIGHT
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``weight * (||grad f(x_hat)||_2 - 1)^2`` at random
    points between real and fake ab (L is the same in both, so only ab is interpolated).

    The critic ``f`` of an image is the mean of its PatchGAN scores -- the quantity the
    Wasserstein losses above average -- so the constraint is on the function the loss uses.
    (pix2pix's ``cal_gradient_penalty`` differentiates the patch *sum*, which makes the
    penalty depend on the number of patches, i.e. on the image size.)
    """
    alpha = torch.rand(real_ab.shape[0], 1, 1, 1, device=real_ab.device, dtype=real_ab.dtype)
    mixed = (alpha * real_ab + (1 - alpha) * fake_ab.detach()).requires_grad_(True)
    # Under fp16 the input gradient (unscaled: the loss scaler only sees the outer loss)
    # would underflow, so the penalty's pass runs in fp32; bf16 has fp32's range.
    device = mixed.device.type
    half = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
    with torch.autocast(device, enabled=False) if half else contextlib.nullcontext():
        score = discriminator(torch.cat([L, mixed], 1)).float().flatten(1).mean(1)
        (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return weight * ((grad.flatten(1).float().norm(2, dim=1) - 1) ** 2).mean()


def critic_options(gan_mode: str, builder) -> dict:
    """What the objective asks of the discriminator: WGAN-GP's critic has no batch
    statistics (models/networks.py, DISCRIMINATOR_NORMS). A discriminator registered
    without a ``norm`` argument is built as it is, and said so."""
    if gan_mode != "wgangp":
        return {}
    if "norm" not in inspect.signature(builder).parameters:
        log.warning("--gan-mode wgangp: discriminator %r takes no norm= argument, so its critic keeps whatever "
                    "normalisation it has; the gradient penalty assumes none across the batch", builder.__name__)
        return {}
    return {"norm": "layer"}


class AdversarialLoss(nn.Module):
    def __init__(self, discriminator: nn.Module, criterion: GANLoss):
        super().__init__()
        self.discriminator = discriminator
        self.criterion = criterion

    def forward(self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
        return self.criterion(self.discriminator(torch.cat([L, fake_ab], 1)), True, for_discriminator=False)

    def discriminator_loss(self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
        # Fake and real go through D separately, as in pix2pix, so BatchNorm statistics
        # are never mixed across the two.
        fake = self.criterion(self.discriminator(torch.cat([L, fake_ab.detach()], 1)), False)
        real = self.criterion(self.discriminator(torch.cat([L, real_ab], 1)), True)
        loss = 0.5 * (fake + real)
        if self.criterion.gan_mode == "wgangp":
            loss = loss + gradient_penalty(self.discriminator, L, real_ab, fake_ab)
        return loss


@register_loss(
    "gan",
    "conditional GAN: a PatchGAN discriminator sees L+ab (--gan-mode vanilla|lsgan|hinge|wgangp)",
    reference=(
        "Isola et al., pix2pix, CVPR 2017; lsgan: Mao et al., ICCV 2017; hinge: Lim & Ye 2017 / "
        "Miyato et al., ICLR 2018; wgangp: Gulrajani et al., NeurIPS 2017"
    ),
    defaults=(
        "PatchGAN n_layers=3, base channels --disc-width (default: --width; pix2pix: 64), "
        "Adam 2e-4 betas (0.5, 0.999), D loss halved, --gan-mode vanilla; "
        f"wgangp adds a gradient penalty of weight {GP_WEIGHT:g} on interpolated ab and its critic uses layer "
        "norm, not batch norm (Gulrajani et al.: the penalty is per sample)"
    ),
    adversarial=True,
)
def gan(options: LossOptions) -> nn.Module:
    disc = build_discriminator(options.discriminator, in_channels=3, width=options.disc_width,
                               **critic_options(options.gan_mode, DISCRIMINATORS[options.discriminator]))
    return AdversarialLoss(disc, GANLoss(options.gan_mode))
