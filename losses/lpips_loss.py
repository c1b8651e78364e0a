"""LPIPS (Zhang et al., CVPR 2018) as a training loss: the ``lpips`` package's AlexNet
network with its learned linear layers, frozen.

The linear layers ship inside the ``lpips`` package; the AlexNet backbone is torchvision's
ImageNet checkpoint, found (or fetched) like every pretrained file in models/pretrained.py.
Without it Colorbench falls back -- loudly, and named ``lpips[random-alexnet]`` everywhere
-- to a seeded random AlexNet under the learned linear layers, or fails with
``--strict-weights``, exactly as the perceptual loss does for VGG16.
"""
from __future__ import annotations

import logging

import torch
from colorbench_datasets.lab import model_to_rgb
from torch import nn

from losses.registry import LossOptions, cached_network, register_loss
from models.metric_nets import lpips_alex
from models.pretrained import (
    WeightsUnavailable,
    known_weights,
    load_lpips_linear,
    load_state_dict,
)

log = logging.getLogger("colorbench")

RANDOM_TAG = "random-alexnet"


class FrozenLPIPS(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "FrozenLPIPS":
        return super().train(False)  # frozen: dropout in the linear layers stays off


@cached_network
def lpips_network(device: str, strict: bool) -> tuple[FrozenLPIPS, str | None]:
    """The LPIPS-AlexNet network (the same one the ``lpips`` metric uses), loaded once per
    device, and its caveat tag."""
    from torchvision.models import alexnet

    tag = None
    try:
        trunk = load_state_dict(known_weights()["alexnet"])
    except WeightsUnavailable as exc:
        if strict:
            raise
        tag = RANDOM_TAG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            trunk = alexnet(weights=None).state_dict()
        log.warning(
            exc.one_line(f"the lpips loss runs on a RANDOMLY INITIALISED AlexNet under LPIPS's linear layers and is "
                         f"named 'lpips[{RANDOM_TAG}]' (--strict-weights: an error instead)")
        )
    return FrozenLPIPS(lpips_alex(trunk, load_lpips_linear())).to(device), tag


class LPIPSLoss(nn.Module):
    def __init__(self, lpips: FrozenLPIPS, weights_tag: str | None = None):
        super().__init__()
        self.lpips = lpips
        self.weights_tag = weights_tag

    def forward(self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
        fake, real = model_to_rgb(L, fake_ab), model_to_rgb(L, real_ab)
        # normalize=True: lpips takes [0, 1] RGB and rescales to its [-1, 1] itself.
        return self.lpips.net(fake.float(), real.float(), normalize=True).mean()


@register_loss(
    "lpips",
    "LPIPS distance between the predicted and true RGB images, as a training loss (frozen)",
    reference="Zhang et al., The Unreasonable Effectiveness of Deep Features, CVPR 2018",
    defaults="lpips package v0.1, net='alex' (torchvision AlexNet_Weights.IMAGENET1K_V1), mean over images",
    weights="alexnet",
)
def lpips_term(options: LossOptions) -> nn.Module:
    net, tag = lpips_network(options.device, options.strict_weights)
    return LPIPSLoss(net, tag)
