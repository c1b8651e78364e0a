"""Pretrained weights: where they are looked for, how they load, and an honest failure.

Every file lives in torch hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``), the same
place torchvision and pytorch-fid put their downloads, so a file fetched by either, or
imported with ``bench weights import``, is found by both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class WeightsFile:
    key: str
    filename: str
    url: str
    used_for: str


class WeightsUnavailable(RuntimeError):
    """A pretrained file is neither cached nor downloadable; the message says how to fix it."""

    def __init__(self, weights: WeightsFile, reason: str):
        self.weights = weights
        super().__init__(
            f"{weights.used_for} needs {weights.filename}, which is not in {checkpoint_dir()} "
            f"and could not be downloaded ({reason}). Fetch {weights.url} on a machine with "
            f"internet and run `bench weights import {weights.filename}` here "
            "(or set TORCH_HOME to a cache that has it)."
        )


def _vgg16() -> WeightsFile:
    from torchvision.models import VGG16_Weights

    url = VGG16_Weights.IMAGENET1K_V1.url
    return WeightsFile("vgg16", url.rsplit("/", 1)[-1], url, "the perceptual loss (VGG16)")


def _alexnet() -> WeightsFile:
    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.IMAGENET1K_V1.url
    return WeightsFile("alexnet", url.rsplit("/", 1)[-1], url, "LPIPS (AlexNet)")


def known_weights() -> dict[str, WeightsFile]:
    return {w.key: w for w in (_vgg16(), _alexnet())}


def checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(weights: WeightsFile) -> Path:
    return checkpoint_dir() / weights.filename


def offline() -> bool:
    """``COLORBENCH_OFFLINE=1`` (or HF's ``HF_HUB_OFFLINE``-style habit) skips download tries."""
    return os.environ.get("COLORBENCH_OFFLINE", "") not in ("", "0")


def load_state_dict(weights: WeightsFile) -> dict:
    """The state dict from the cache, downloading it first when that is possible."""
    path = cached_path(weights)
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say which and how to fix it
            raise WeightsUnavailable(weights, f"the cached file {path} is unreadable: {exc}; delete it") from exc
    if offline():
        raise WeightsUnavailable(weights, "COLORBENCH_OFFLINE is set")
    try:
        return torch.hub.load_state_dict_from_url(
            weights.url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except Exception as exc:
        raise WeightsUnavailable(weights, f"{type(exc).__name__}: {exc}") from exc
