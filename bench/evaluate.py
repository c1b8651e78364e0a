"""Scoring generators (and the gray baseline) on the val split."""
from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bench import metrics as M
from bench.metrics import METRICS, PLAIN_METRICS, score_batch
from colorbench_datasets import LabSplit, model_to_rgb
from models import build_generator
from models.metric_nets import MetricNets


def generator_record(G: nn.Module, settings, combination: str, seed: int) -> dict:
    """What ``generator.pt`` holds: enough to rebuild and run the generator anywhere."""
    return {
        "state_dict": G.state_dict(), "generator": settings.generator, "size": settings.size,
        "width": settings.width, "out_channels": settings.out_channels,
        "head": getattr(G, "head_spec", None),  # e.g. Zhang's class logits; None: plain ab
        "combination": combination, "seed": seed,
    }


class GeneratorFileError(ValueError):
    """A generator.pt that cannot be loaded; the message names it and the fix."""


def load_generator(path, device="cpu") -> nn.Module:
    """A trained generator from ``generator.pt``, in eval mode, ready for ``predict_ab``."""
    fix = (f"it was damaged or cut short: delete its cell folder {Path(path).parent} and rerun `bench run` with "
           "the same options and --out to train that cell again")
    try:
        record = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated, foreign or pickled-code file: never trusted
        raise GeneratorFileError(f"{path} is not a readable generator ({type(exc).__name__}); {fix}") from None
    try:
        G = build_generator(
            record["generator"], int(record["size"]), int(record["width"]), int(record["out_channels"]), record.get("head")
        )
        G.load_state_dict(record["state_dict"])
    except Exception as exc:  # keys missing, wrong types, shapes that do not fit
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise GeneratorFileError(f"{path} does not hold a usable generator ({reason}); {fix}") from None
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


@dataclass
class Scores:
    """One model's scores on the val split: ``means`` is what ``metrics.csv`` records (the
    set value of every metric); ``per_image`` keeps each per-image metric's value for every
    val image (name -> (N,) float64, in the split's order) for paired statistics; ``features``
    are the predictions' Inception features while in memory (None without the network)."""

    means: dict[str, float]
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    features: torch.Tensor | None = None


class Scorer:
    """Scores ab predictions against one val split, batched on the split's device.

    Made once per run: it holds the metric networks (``MetricNets``, loaded once) and the
    ground truth's Inception features, colourfulness and colour distribution (computed
    once), so scoring each model only runs the networks on its own predictions. Without
    ``nets`` it reports the metrics that need no network; with ``nets`` every metric of
    ``METRICS``, a missing network's metrics as NaN with the missing file in ``notes``.
    """

    def __init__(
        self, L: torch.Tensor, target_rgb: torch.Tensor, nets: MetricNets | None = None, batch_size: int = 64,
        image_names: list[str] | None = None,
    ):
        self.L, self.target_rgb, self.nets, self.batch_size = L, target_rgb, nets, batch_size
        self.image_names = list(image_names) if image_names is not None else [f"{i}" for i in range(len(L))]
        self.names = [
            n for n in METRICS
            if nets is not None or n in PLAIN_METRICS or n == "delta_cf" or METRICS[n].needs == "val_ab"
        ]
        cf, features, cells = [], [], torch.zeros(M.AB_CELLS, dtype=torch.float64)
        with torch.inference_mode():
            for target in self._targets():
                cf.append(M.colorfulness(target))
                cells += M.ab_cell_counts(M.rgb_to_lab(target.double())).cpu()
                if nets is not None and nets.inception is not None:
                    features.append(nets.inception(target).double())
            self.target_cf = torch.cat(cf)
            self.target_features = torch.cat(features) if features else None
            # auc_rebal's weights: the val photos' own colour distribution, fixed for every model
            self.cell_weights = M.ab_cell_weights(cells).to(self.device)
            self.image_weights = {"auc_rebal": torch.cat([
                M.image_weight(M.rgb_to_lab(t.double()), self.cell_weights) for t in self._targets()
            ]).double().cpu().numpy()}
        self.occupied_cells = int((cells > 0).sum())

    @classmethod
    def for_split(cls, val: LabSplit, nets: MetricNets | None = None, batch_size: int = 64) -> "Scorer":
        return cls(val.L, val.rgb, nets, batch_size, getattr(val, "names", None))

    def __len__(self) -> int:
        return len(self.L)

    def _targets(self):
        # Batches follow the L batches' device: a memory-mapped split (``MappedLabSplit``)
        # reads rows on the host and hands them to the run's device.
        for i in range(0, len(self.L), self.batch_size):
            yield self.target_rgb[i : i + self.batch_size].to(self.device).float() / 255

    @property
    def device(self) -> torch.device:
        return self.L[:1].device

    @property
    def notes(self) -> dict[str, str]:
        """The ``note`` of each metric's rows: the image count behind FID/KID (both are
        biased or noisy at small N), or the weights file a missing metric lacks."""
        if self.nets is None:
            return {}
        notes = {m: self.nets.notes.get(m, f"missing weights file {w.filename}") for m, w in self.nets.missing.items()}
        for m in ("fid", "kid"):
            if m not in notes:
                notes[m] = f"n={len(self)}" if len(self) >= 2 else f"n={len(self)}: needs 2+ val images"
        return notes

    def ground_truth(self) -> dict[str, float]:
        """What the val photos themselves score where that is informative: their colourfulness."""
        return {"cf": self.target_cf.double().mean().item()}

    def ground_truth_per_image(self) -> dict[str, np.ndarray]:
        """Per val image: the photo's own colourfulness (``delta_cf`` compares set means of
        it) and its share of ``auc_rebal``'s pooled weight (``auc_rebal_weight``)."""
        return {"cf": self.target_cf.double().cpu().numpy(), "auc_rebal_weight": self.image_weights["auc_rebal"]}

    def score_ab(self, ab: torch.Tensor) -> dict[str, float]:
        """Every metric of ``names`` for predicted ab (model scale, (N,2,H,W)): the mean over
        images of the per-image ones, one value over the set for fid, kid and delta_cf."""
        return self.ab_scores(ab).means

    def ab_scores(self, ab: torch.Tensor) -> Scores:
        """``score_ab`` with every per-image value kept (``Scores``)."""
        return self._score(lambda i, L: ab[i : i + len(L)])

    @torch.inference_mode()
    def _score(self, ab_for_batch) -> Scores:
        # Predictions are made and scored one batch at a time, so a large val split never
        # holds all its predictions on the device at once.
        nets = self.nets or MetricNets()
        per_image: dict[str, list[torch.Tensor]] = {}
        features = []
        for i, target in zip(range(0, len(self.L), self.batch_size), self._targets()):
            L = self.L[i : i + self.batch_size]
            pred = model_to_rgb(L, ab_for_batch(i, L).to(L.device))
            values = score_batch(pred, target, cell_weights=self.cell_weights)
            if nets.lpips is not None:
                values["lpips"] = M.lpips(pred, target, nets.lpips)
            for name, v in values.items():
                per_image.setdefault(name, []).append(v)
            if nets.inception is not None:
                features.append(nets.inception(pred).double())
        per_image = {name: torch.cat(v) for name, v in per_image.items()}
        out = {}
        for name in self.names:
            if name in self.image_weights and name in per_image:  # auc_rebal: all val pixels pooled
                w = torch.as_tensor(self.image_weights[name], device=per_image[name].device)
                out[name] = ((per_image[name].double() * w).sum() / w.sum()).item()
            elif name in per_image:
                out[name] = per_image[name].double().mean().item()
            elif name == "delta_cf":
                out[name] = M.delta_cf(per_image["cf"], self.target_cf).item()
            elif name in ("fid", "kid") and features and len(self) >= 2:
                out[name] = METRICS[name].fn(torch.cat(features), self.target_features).item()
            else:
                out[name] = math.nan
        kept = {name: v.double().cpu().numpy() for name, v in per_image.items()}
        return Scores(out, kept, torch.cat(features) if features else None)

    def score_generator(self, G: nn.Module) -> dict[str, float]:
        return self.generator_scores(G).means

    def generator_scores(self, G: nn.Module) -> Scores:
        """``score_generator`` with every per-image value kept (``Scores``)."""
        return self._score(lambda i, L: predict_ab(G, L, len(L)))

    def score_gray(self) -> dict[str, float]:
        """The floor every model is read against: ab = 0, i.e. the grayscale input itself."""
        return self.gray_scores().means

    def gray_scores(self) -> Scores:
        """``score_gray`` with every per-image value kept (``Scores``)."""
        return self._score(lambda i, L: torch.zeros(len(L), 2, *L.shape[2:], device=L.device))


def score_predictions(
    L: torch.Tensor, ab: torch.Tensor, target_rgb: torch.Tensor, batch_size: int = 64, nets: MetricNets | None = None
) -> dict[str, float]:
    """Mean of each metric over images (set metrics over the set); ``target_rgb`` is uint8
    (N,3,H,W). Scoring several models? Make one ``Scorer`` and reuse it."""
    return Scorer(L, target_rgb, nets, batch_size).score_ab(ab)


def score_generator(G: nn.Module, val: LabSplit, batch_size: int = 64, nets: MetricNets | None = None) -> dict[str, float]:
    return Scorer.for_split(val, nets, batch_size).score_generator(G)


def score_gray(val: LabSplit, batch_size: int = 64, nets: MetricNets | None = None) -> dict[str, float]:
    """The floor every model is read against: ab = 0, i.e. the grayscale input itself."""
    return Scorer.for_split(val, nets, batch_size).score_gray()
