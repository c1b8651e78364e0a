"""VGG16 perceptual loss (Johnson et al. 2016) on the RGB image a prediction makes."""
from __future__ import annotations

import functools
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from colorbench_datasets.lab import model_to_rgb
from losses.registry import LossOptions, register_loss
from models.pretrained import WeightsUnavailable, known_weights, load_state_dict

# Indices of relu1_2, relu2_2, relu3_3 and relu4_3 in torchvision's vgg16().features.
VGG_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
RANDOM_TAG = "random-vgg"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """Frozen VGG16 slices ending at each of ``VGG_LAYERS``."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        ends = sorted(VGG_LAYERS.values())
        starts = [0] + [e + 1 for e in ends[:-1]]
        self.slices = nn.ModuleList(features[s : e + 1] for s, e in zip(starts, ends))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # frozen: never leaves eval mode

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x = (rgb - self.mean) / self.std
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


@functools.lru_cache(maxsize=None)
def vgg16_features(device: str, strict: bool) -> tuple[VGGFeatures, str | None]:
    """The VGG16 feature network, loaded once per device, and its caveat tag.

    Without the ImageNet weights it falls back (unless ``strict``) to a randomly
    initialised VGG16 -- a known "random-feature" perceptual loss -- with a fixed seed, and
    returns the tag ``random-vgg`` that goes into every name shown for the loss.
    """
    from torchvision.models import vgg16

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = vgg16(weights=None)
    tag = None
    try:
        net.load_state_dict(load_state_dict(known_weights()["vgg16"]))
    except WeightsUnavailable as exc:
        if strict:
            raise
        tag = RANDOM_TAG
        warnings.warn(
            f"\n{'!' * 78}\n{exc}\nFalling back to a RANDOMLY INITIALISED VGG16: the loss is reported as "
            f"'perceptual[{RANDOM_TAG}]', not as the ImageNet perceptual loss. Use --strict-weights "
            f"to make this an error.\n{'!' * 78}",
            stacklevel=2,
        )
    return VGGFeatures(net.features[: max(VGG_LAYERS.values()) + 1]).to(device), tag


class PerceptualLoss(nn.Module):
    def __init__(self, features: VGGFeatures, weights_tag: str | None = None):
        super().__init__()
        self.features = features
        self.weights_tag = weights_tag

    def forward(self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
        fake = self.features(model_to_rgb(L, fake_ab))
        with torch.no_grad():
            real = self.features(model_to_rgb(L, real_ab))
        return sum(F.mse_loss(f.float(), r.float()) for f, r in zip(fake, real))


@register_loss(
    "perceptual",
    "VGG16 feature MSE at relu1_2/2_2/3_3/4_3 on the RGB image (ImageNet weights)",
    reference="Johnson et al., ECCV 2016",
    defaults="torchvision VGG16_Weights.IMAGENET1K_V1, layers summed with weight 1",
)
def perceptual(options: LossOptions) -> nn.Module:
    features, tag = vgg16_features(options.device, options.strict_weights)
    return PerceptualLoss(features, tag)
