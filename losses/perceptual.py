"""VGG16 perceptual loss (Johnson et al. 2016) on the RGB image a prediction makes.

Which layers it compares, and with what weight, is an option (``--perceptual-layers``,
e.g. ``relu2_2`` for Johnson's feature-reconstruction loss alone, or
``relu1_2:0.5,relu2_2,relu3_3``); the default sums relu1_2/2_2/3_3/4_3 with weight 1.
"""
from __future__ import annotations

import logging

import torch
from colorbench_datasets.lab import model_to_rgb
from torch import nn
from torch.nn import functional as F

from losses.registry import (
    DEFAULT_PERCEPTUAL_LAYERS,
    LossOptions,
    cached_network,
    register_loss,
)
from models.pretrained import WeightsUnavailable, known_weights, load_state_dict

log = logging.getLogger("colorbench")

# Index of each ReLU in torchvision's vgg16().features.
VGG_LAYERS = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}
DEFAULT_LAYERS = DEFAULT_PERCEPTUAL_LAYERS
RANDOM_TAG = "random-vgg"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_layer_weights(text: str) -> tuple[tuple[str, float], ...]:
    """``"relu2_2,relu3_3:0.5"`` -> ``(("relu2_2", 1.0), ("relu3_3", 0.5))``, in network order."""
    out = {}
    for part in (text or "").split(","):
        name, _, weight_text = part.strip().partition(":")
        name = name.strip()
        if name not in VGG_LAYERS:
            raise ValueError(
                f"--perceptual-layers {text!r}: unknown VGG16 layer {name!r}; "
                f"choose from {', '.join(VGG_LAYERS)} (optionally LAYER:WEIGHT)"
            )
        if name in out:
            raise ValueError(f"--perceptual-layers {text!r}: layer {name!r} is listed twice")
        try:
            weight = float(weight_text) if weight_text.strip() else 1.0
        except ValueError:
            raise ValueError(f"--perceptual-layers {text!r}: weight {weight_text!r} of {name} is not a number") from None
        if not 0 < weight < float("inf"):
            raise ValueError(f"--perceptual-layers {text!r}: weight of {name} must be positive and finite")
        out[name] = weight
    return tuple(sorted(out.items(), key=lambda kv: VGG_LAYERS[kv[0]]))


class VGGFeatures(nn.Module):
    """Frozen VGG16 slices ending at each of ``layers`` (names of ``VGG_LAYERS``)."""

    def __init__(
        self, features: nn.Sequential, layers=tuple(DEFAULT_LAYERS.split(",")), memory_format=torch.channels_last
    ):
        super().__init__()
        # channels_last: the perceptual step ran 1.07-1.16x faster so on a CPU
        # (benchmarks/perceptual_step.py), and cuDNN's tensor-core kernels are NHWC.
        self.memory_format = memory_format
        ends = sorted(VGG_LAYERS[name] for name in layers)
        starts = [0] + [e + 1 for e in ends[:-1]]
        self.slices = nn.ModuleList(features[s : e + 1] for s, e in zip(starts, ends))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False).eval().to(memory_format=memory_format)

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # frozen: never leaves eval mode

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x = ((rgb - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out


@cached_network
def vgg16_features(
    device: str, strict: bool, layers: tuple[str, ...] = tuple(DEFAULT_LAYERS.split(","))
) -> tuple[VGGFeatures, str | None]:
    """The VGG16 features at ``layers``, loaded once per device, and its caveat tag.

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
        log.warning(
            exc.one_line(f"the perceptual loss runs on a RANDOMLY INITIALISED VGG16 and is named "
                         f"'perceptual[{RANDOM_TAG}]' (--strict-weights: an error instead)")
        )
    return VGGFeatures(net.features[: max(VGG_LAYERS[n] for n in layers) + 1], layers).to(device), tag


class PerceptualLoss(nn.Module):
    """Sum over layers of ``weight * MSE(features(fake), features(real))``."""

    def __init__(self, features: VGGFeatures, weights_tag: str | None = None, layer_weights=None):
        super().__init__()
        self.features = features
        self.weights_tag = weights_tag
        self.layer_weights = tuple(layer_weights) if layer_weights else (1.0,) * len(features.slices)
        if len(self.layer_weights) != len(features.slices):
            raise ValueError(f"{len(self.layer_weights)} layer weights for {len(features.slices)} layers")

    def forward(self, L: torch.Tensor, fake_ab: torch.Tensor, real_ab: torch.Tensor) -> torch.Tensor:
        fake = self.features(model_to_rgb(L, fake_ab))
        with torch.no_grad():
            real = self.features(model_to_rgb(L, real_ab))
        return sum(w * F.mse_loss(f.float(), r.float()) for w, f, r in zip(self.layer_weights, fake, real))


@register_loss(
    "perceptual",
    "VGG16 feature MSE on the RGB image (ImageNet weights); layers and weights by --perceptual-layers",
    reference="Johnson et al., ECCV 2016",
    defaults=(
        f"torchvision VGG16_Weights.IMAGENET1K_V1, --perceptual-layers {DEFAULT_LAYERS} "
        f"(weight 1 each; any of relu1_1 ... relu5_3, LAYER:WEIGHT)"
    ),
    weights="vgg16",
)
def perceptual(options: LossOptions) -> nn.Module:
    layers = parse_layer_weights(options.perceptual_layers)
    features, tag = vgg16_features(options.device, options.strict_weights, tuple(n for n, _ in layers))
    return PerceptualLoss(features, tag, [w for _, w in layers])
