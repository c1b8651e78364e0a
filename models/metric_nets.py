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


def lpips_alex(trunk_state: dict, linear_state: dict) -> nn.Module:
    """``lpips.LPIPS(net='alex', version='0.1')`` with its trunk from torchvision's AlexNet
    state dict and its linear layers from the package's ``weights/v0.1/alex.pth``."""
    import lpips

    with warnings.catch_warnings():  # lpips builds the trunk with torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(pretrained=False, net="alex", version="0.1", pnet_rand=True, verbose=False)
    # lpips slices torchvision's alexnet().features into slice1..5, keeping each layer's
    # index: sliceK.<i>.weight is features.<i>.weight.
    trunk = {key: trunk_state[f"features.{key.split('.', 1)[1]}"] for key in net.net.state_dict()}
    net.net.load_state_dict(trunk)
    # lin0..lin4 (``lins`` is the same modules again under a second name).
    wanted = {k for k in net.state_dict() if k.split(".")[0][:3] == "lin" and k.split(".")[0][3:].isdigit()}
    if set(linear_state) != wanted:
        raise ValueError(f"LPIPS linear weights have keys {sorted(linear_state)}, expected {sorted(wanted)}")
    net.load_state_dict(linear_state, strict=False)
    return net.eval().requires_grad_(False)


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


def _alexnet_lpips() -> nn.Module:
    known = pretrained.known_weights()
    return lpips_alex(pretrained.load_state_dict(known["alexnet"]), pretrained.load_lpips_linear())


def _inception_pool() -> nn.Module:
    return fid_inception(pretrained.load_state_dict(pretrained.known_weights()["inception"]))


# The networks a metric may declare (``bench.score.metrics.Metric.network``): key -> loader, which
# raises ``WeightsUnavailable`` naming the file it lacks.
NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "alexnet": _alexnet_lpips,  # LPIPS (AlexNet trunk, v0.1 linear layers)
    "inception": _inception_pool,  # pytorch-fid's InceptionV3 pool features
}
