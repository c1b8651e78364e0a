"""The networks metrics declare (LPIPS's AlexNet, FID/KID's Inception), built from pretrained
files or reported missing.

Both packages would fetch their weights themselves (``lpips`` through torchvision's
``alexnet(pretrained=True)``, ``pytorch_fid`` through its own download), which offline ends
in a bare network error or, worse, silently random weights. Here every file goes through
``models.pretrained``: found in the cache, downloaded when possible, or an honest
``WeightsUnavailable`` naming the file -- and a metric without its network is recorded as
missing, never computed with random weights under its real name.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from models import pretrained


def lpips_net(trunk_state: dict, linear_state: dict, net: str = "alex") -> nn.Module:
    """``lpips.LPIPS(net=net, version='0.1')`` (``alex`` or ``vgg``) with its trunk from
    torchvision's AlexNet or VGG16 state dict and its linear layers from the package's
    ``weights/v0.1/<net>.pth``."""
    import lpips

    with warnings.catch_warnings():  # lpips builds the trunk with torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=False, net=net, version="0.1", pnet_rand=True, verbose=False)
    # lpips slices torchvision's features into slice1..5, keeping each layer's index:
    # sliceK.<i>.weight is features.<i>.weight.
    trunk = {key: trunk_state[f"features.{key.split('.', 1)[1]}"] for key in model.net.state_dict()}
    model.net.load_state_dict(trunk)
    # lin0..lin4 (``lins`` is the same modules again under a second name).
    wanted = {k for k in model.state_dict() if k.split(".")[0][:3] == "lin" and k.split(".")[0][3:].isdigit()}
    if set(linear_state) != wanted:
        raise ValueError(f"LPIPS linear weights have keys {sorted(linear_state)}, expected {sorted(wanted)}")
    model.load_state_dict(linear_state, strict=False)
    return model.eval().requires_grad_(False)


def lpips_alex(trunk_state: dict, linear_state: dict) -> nn.Module:
    return lpips_net(trunk_state, linear_state, "alex")


class InceptionPool(nn.Module):
    """sRGB in [0, 1] (any size) -> pytorch-fid's 2048-d pool features (N, 2048)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.net(rgb)[0].flatten(1)


def fid_inception(state: dict) -> nn.Module:
    """pytorch-fid's ``InceptionV3`` (FID variant, pool3 block, 299 px bilinear resize,
    [-1, 1] input scaling), with the given state dict instead of its own download."""
    from unittest import mock

    from pytorch_fid import inception as pf

    def provide(url, *args, **kwargs):  # what InceptionV3() asks its downloader for
        if url != pf.FID_WEIGHTS_URL:
            raise ValueError(f"pytorch-fid asked for {url}, expected {pf.FID_WEIGHTS_URL}")
        return state

    # pytorch-fid builds the network and downloads its weights in one constructor; swap the
    # download for the state dict already loaded (and hash-checked) from the cache.
    with mock.patch.object(pf, "load_state_dict_from_url", provide):
        net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return InceptionPool(net).eval().requires_grad_(False)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TorchvisionInceptionPool(nn.Module):
    """torchvision's ``inception_v3`` cut at its average pool: (N, 2048) features, fed as
    DDColor's and CT2's ``INCEPTION_V3_FID`` feeds it (their custom_fid code).

    That wrapper resizes bilinearly to 299 (align_corners False), maps x -> x/2 + 1/2 as if
    its input were in [-1, 1], then applies x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5 (the
    inverse of an ImageNet normalisation, torchvision's ``transform_input``). CT2 hands it
    images in [-1, 1], DDColor in [0, 1]: ``input_range`` says which, so the same sRGB in
    [0, 1] gives each paper's features.
    """

    def __init__(self, net: nn.Module, input_range: str = "[0,1]"):
        super().__init__()
        if input_range not in ("[0,1]", "[-1,1]"):
            raise ValueError(f"input_range {input_range!r}: expected '[0,1]' or '[-1,1]'")
        self.net, self.input_range = net, input_range
        self.register_buffer("scale", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) / 0.5)
        self.register_buffer("shift", (torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) - 0.5) / 0.5)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = rgb * 2 - 1 if self.input_range == "[-1,1]" else rgb
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (x * 0.5 + 0.5) * self.scale + self.shift
        n = self.net
        for layer in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1, n.Conv2d_4a_3x3,
                      n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d,
                      n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, n.avgpool):
            x = layer(x)
        return x.flatten(1)


def torchvision_inception(state: dict, input_range: str = "[0,1]") -> nn.Module:
    """``TorchvisionInceptionPool`` over ``torchvision.models.inception_v3`` with ``state``."""
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    net.load_state_dict(state)
    return TorchvisionInceptionPool(net, input_range).eval().requires_grad_(False)


def _lpips(net: str = "alex") -> nn.Module:
    known = pretrained.known_weights()
    if net == "alex":
        return lpips_alex(pretrained.load_state_dict(known["alexnet"]), pretrained.load_lpips_linear())
    return lpips_net(pretrained.load_state_dict(known["vgg16"]), pretrained.load_lpips_linear(net), net)


def _inception_pool(features: str = "pytorch-fid", input_range: str = "[0,1]") -> nn.Module:
    known = pretrained.known_weights()
    if features == "torchvision":
        return torchvision_inception(pretrained.load_state_dict(known["inception-torchvision"]), input_range)
    return fid_inception(pretrained.load_state_dict(known["inception"]))


# The networks a metric may declare (``bench.score.metrics.Metric.network``): key -> loader
# taking the scoring protocol's options for it (``network_options``), which raises
# ``WeightsUnavailable`` naming the file it lacks.
NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "lpips-net": _lpips,  # LPIPS (AlexNet or VGG16 trunk, v0.1 linear layers)
    "inception": _inception_pool,  # pytorch-fid's InceptionV3, or torchvision's, pool features
}


def network_options(key: str, protocol) -> dict:
    """What a scoring protocol (``bench.score.presets.ScoringProtocol``) asks of network ``key``."""
    if key == "lpips-net":
        return {"net": protocol.lpips_net}
    if key == "inception":
        return {"features": protocol.fid_features, "input_range": protocol.fid_input}
    return {}
