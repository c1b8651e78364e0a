"""A generator that classifies colours: Q logits per pixel over in-gamut ab bins, decoded to
ab by the annealed mean, so the trainer, metrics, sample grids and ``predict_ab`` treat it
like any regression generator.

A *head* is a plain dict (it is stored in ``generator.pt``): ``{"kind": "classes", "grid":
10.0, "temperature": 0.38}``. ``build_generator(..., head=...)`` builds one.
"""
from __future__ import annotations

from typing import Callable

import torch
from colorbench_datasets.lab import AB_SCALE
from torch import nn

from models.ab_bins import annealed_mean, gamut_bins

CLASS_HEAD = "classes"


def class_head(grid: float, temperature: float) -> dict:
    return {"kind": CLASS_HEAD, "grid": float(grid), "temperature": float(temperature)}


class ColorClassifier(nn.Module):
    """Wraps a logits network. ``forward(L)`` returns ab in the model's ab/110 scale;
    ``forward(L, head_output=True)`` returns ``(ab, logits)`` -- the training loop runs G
    once per step, hands every term the decoded ab and the terms that declare this head
    (the classification loss) the logits too."""

    def __init__(self, net: nn.Module, grid: float, temperature: float):
        super().__init__()
        self.net = net
        self.head_spec = class_head(grid, temperature)
        self.temperature = temperature
        # Not saved: recomputed from ``grid`` (deterministic), so generator.pt stays small.
        self.register_buffer("bins", gamut_bins(grid).float() / AB_SCALE, persistent=False)

    @property
    def num_classes(self) -> int:
        return len(self.bins)

    def forward(self, L: torch.Tensor, head_output: bool = False):
        logits = self.net(L)
        ab = annealed_mean(logits, self.bins, self.temperature)
        return (ab, logits) if head_output else ab


def build_head(head: dict, builder: Callable[..., nn.Module]) -> nn.Module:
    """The generator ``builder(out_channels=, tanh=)`` makes, with ``head`` on top.

    The regression generator of the same seed is built first and its body copied over, so a
    classification model starts from exactly the weights every other combination of its seed
    starts from; only the output layer (Q channels, no tanh) is new.
    """
    if head.get("kind") != CLASS_HEAD:
        raise ValueError(f"unknown generator head {head!r}; known: {CLASS_HEAD!r}")
    regression = builder(out_channels=2, tanh=True)
    q = len(gamut_bins(head["grid"]))
    net = builder(out_channels=q, tanh=False)
    body = {k: v for k, v in regression.state_dict().items() if net.state_dict()[k].shape == v.shape}
    net.load_state_dict(body, strict=False)
    return ColorClassifier(net, head["grid"], head["temperature"])
