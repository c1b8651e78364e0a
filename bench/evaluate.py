"""Scoring generators (and the gray baseline) on the val split."""
from __future__ import annotations

import torch
from torch import nn

from bench.metrics import METRICS, score_batch
from colorbench_datasets import LabSplit, model_to_rgb
from models import build_generator


def generator_record(G: nn.Module, settings, combination: str, seed: int) -> dict:
    """What ``generator.pt`` holds: enough to rebuild and run the generator anywhere."""
    return {
        "state_dict": G.state_dict(), "generator": settings.generator, "size": settings.size,
        "width": settings.width, "out_channels": settings.out_channels,
        "combination": combination, "seed": seed,
    }


def load_generator(path, device="cpu") -> nn.Module:
    """A trained generator from ``generator.pt``, in eval mode, ready for ``predict_ab``."""
    record = torch.load(path, map_location=device, weights_only=True)
    G = build_generator(record["generator"], record["size"], record["width"], record["out_channels"])
    G.load_state_dict(record["state_dict"])
    G.meta = {k: v for k, v in record.items() if k != "state_dict"}
    return G.to(device).eval()


@torch.inference_mode()
def predict_ab(G: nn.Module, L: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The generator's ab for every L (eval mode: BatchNorm running stats, no dropout)."""
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    out = [G(L[i : i + batch_size].to(device)).float() for i in range(0, len(L), batch_size)]
    G.train(was_training)
    return torch.cat(out)


@torch.inference_mode()
def score_predictions(
    L: torch.Tensor, ab: torch.Tensor, target_rgb: torch.Tensor, batch_size: int = 64
) -> dict[str, float]:
    """Mean of each metric over images; ``target_rgb`` is uint8 (N,3,H,W)."""
    per_image: dict[str, list[torch.Tensor]] = {name: [] for name in METRICS}
    for i in range(0, len(L), batch_size):
        pred = model_to_rgb(L[i : i + batch_size], ab[i : i + batch_size].to(L.device))
        target = target_rgb[i : i + batch_size].to(pred.device).float() / 255
        for name, values in score_batch(pred, target).items():
            per_image[name].append(values)
    return {name: torch.cat(v).mean().item() for name, v in per_image.items()}


def _score_in_chunks(val: LabSplit, ab_of, batch_size: int, chunk: int = 2048) -> dict[str, float]:
    """Per-image means over ``val``, ``chunk`` images at a time, so a val split kept on disk
    (``MappedLabSplit``) never has to fit on the device at once: the count-weighted mean of
    the chunk means (a split of one chunk returns its means unchanged)."""
    parts = []
    for i in range(0, len(val), chunk):
        L = val.L[i : i + chunk]
        ab = ab_of(L)
        parts.append((len(L), score_predictions(L.to(ab.device), ab, val.rgb[i : i + chunk], batch_size)))
    if len(parts) == 1:
        return parts[0][1]
    return {name: sum(n * means[name] for n, means in parts) / len(val) for name in parts[0][1]}


def score_generator(G: nn.Module, val: LabSplit, batch_size: int = 64) -> dict[str, float]:
    return _score_in_chunks(val, lambda L: predict_ab(G, L, batch_size), batch_size)


def score_gray(val: LabSplit, batch_size: int = 64) -> dict[str, float]:
    """The floor every model is read against: ab = 0, i.e. the grayscale input itself."""
    return _score_in_chunks(val, lambda L: torch.zeros(len(L), 2, *L.shape[2:], device=L.device), batch_size)
