"""Scoring generators (and the gray baseline) on the val split."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from colorbench_datasets import LabSplit, lab_to_rgb, model_to_rgb, rgb_to_lab
from skimage import color as skimage_color
from torch import nn

from bench.score import metrics
from bench.score.metrics import DERIVED, METRICS, PER_IMAGE, SET, Batch
from bench.score.networks import MetricNets
from bench.score.presets import PRESETS, ScoringProtocol
from models import build_generator


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
        record = torch.load(path, map_location="cpu", weights_only=True)  # then moved, as one module
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
    are the predictions' features for the set metrics while in memory (network key -> (N, D),
    e.g. ``"inception"``; empty without the networks)."""

    means: dict[str, float]
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    features: dict[str, torch.Tensor] = field(default_factory=dict)


def gray_ab(L: torch.Tensor) -> torch.Tensor:
    """The gray baseline's "prediction" for ``L``: no colour (ab = 0), the input itself."""
    return torch.zeros(len(L), 2, *L.shape[2:], device=L.device)


def lab_uint8_truth(photos: torch.Tensor) -> torch.Tensor:
    """CT2's ground truth of 8-bit photos (N,3,H,W) uint8, as uint8: segm/metrics.py's
    ``lab_to_rgb(rgb_to_lab(gt))`` = ``(255 * clip(lab2rgb(rgb2lab(gt).astype(float32)), 0,
    1)).astype(uint8)``, run through skimage's own functions photo by photo. Truncation is a
    discontinuity: a level the float32 round trip lands a hair below drops by one, and which
    ones do depends on skimage's float32 order of operations, so no re-implementation of the
    conversion is used: the values are skimage's, value for value."""
    out = [(255 * np.clip(skimage_color.lab2rgb(skimage_color.rgb2lab(im).astype(np.float32)), 0, 1)).astype(np.uint8)
           for im in photos.permute(0, 2, 3, 1).cpu().numpy()]
    if not out:
        return photos.clone()
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(photos.device)


def prepared_truth(rgb: torch.Tensor, truth: str) -> torch.Tensor:
    """The ground truth a protocol scores against, from the prepared photo (sRGB in [0, 1],
    8-bit values): ``photo`` itself; ``lab-float`` its Lab round trip in float (DDColor's
    ``tensor_lab2rgb(L, gt ab)``); ``lab-uint8`` CT2's ``(255 * clip(lab2rgb(rgb2lab(x)
    .astype(float32)))).astype(uint8)`` by skimage itself (``lab_uint8_truth``)."""
    if truth == "photo":
        return rgb
    if truth == "lab-float":
        return lab_to_rgb(rgb_to_lab(rgb.double())).to(rgb.dtype)
    if truth == "lab-uint8":
        photos = (rgb.double() * 255).round().clamp(0, 255).to(torch.uint8)
        return lab_uint8_truth(photos).to(rgb.dtype) / 255
    raise ValueError(f"unknown ground truth {truth!r}: expected photo, lab-float or lab-uint8")


def as_predictions(rgb: torch.Tensor, predictions: str) -> torch.Tensor:
    """A model's predictions as a protocol scores them: ``float``; ``uint8``: rounded to the 8
    bits a saved PNG keeps (DDColor's ``tensor2img``: ``(x * 255).round()``); ``uint8-trunc``:
    truncated to them (CT2's ``save_imgs``: ``(255 * clip(lab2rgb(lab))).astype(uint8)``)."""
    if predictions == "uint8":
        return (rgb * 255).round() / 255
    if predictions == "uint8-trunc":
        return (rgb * 255).floor() / 255
    return rgb


def curve_values(means: dict[str, float], set_metrics: bool) -> dict[str, float]:
    """Of a model's scores, what a training curve records (``Scorer.curve_scores``)."""
    return {name: value for name, value in means.items()
            if value == value and (set_metrics or METRICS[name].kind != SET)}  # value == value: not NaN


class Scorer:
    """Scores ab predictions against one val split, batched on the split's device, with every
    metric of ``METRICS`` by its kind (``bench.score.metrics``): it holds no metric names.

    ``protocol`` (``bench.score.presets``) says which variant of each metric, against which
    ground truth and which metrics at all. Made once per run: it holds the metric networks (``MetricNets``, loaded once) and what the
    ground truth contributes (computed once): the features of the set metrics' networks, the
    descriptive metrics' values on the photos, the colour distribution (``"val_ab"``) and the
    images' pooling weights, so scoring each model only runs the networks on its own
    predictions. Without ``nets`` it reports the metrics that need no network; with ``nets``
    every metric, a missing network's metrics as NaN with the missing file in ``notes``.
    """

    def __init__(
        self, L: torch.Tensor, target_rgb: torch.Tensor, nets: MetricNets | None = None, batch_size: int = 64,
        image_names: list[str] | None = None, protocol: ScoringProtocol = PRESETS["colorbench"],
    ):
        self.L, self.target_rgb, self.nets, self.batch_size = L, target_rgb, nets, batch_size
        self.protocol = protocol
        self.image_names = list(image_names) if image_names is not None else [f"{i}" for i in range(len(L))]
        self.names = [n for n, m in METRICS.items() if (nets is not None or m.network is None) and protocol.scores(n)]
        available = nets or MetricNets()
        # per-image metrics computed from the images alone first, then those with a network
        # (the order of per_image.csv.gz's rows)
        self.per_image_metrics = sorted(
            (m for n, m in METRICS.items() if n in self.names and m.kind == PER_IMAGE
             and (m.network is None or available.get(m.network) is not None)),
            key=lambda m: m.network is not None,
        )
        self.feature_networks = {
            m.network: available.get(m.network) for n, m in METRICS.items()
            if n in self.names and m.kind == SET and available.get(m.network) is not None
        }
        features = {key: [] for key in self.feature_networks}
        cells = torch.zeros(metrics.AB_CELLS, dtype=torch.float64)
        truth, weights = {}, {}
        # CT2's truth comes from skimage photo by photo (tens of ms each): made once and kept
        # as the 8 bits it is, for a split held in memory (a memory-mapped one is recomputed)
        self._truth_uint8 = None
        if protocol.ground_truth == "lab-uint8" and isinstance(target_rgb, torch.Tensor):
            self._truth_uint8 = [lab_uint8_truth(photos.cpu()) for photos in self._photos()]
        with torch.inference_mode():
            for target in self._targets():
                cells += metrics.ab_cell_counts(metrics.rgb_to_lab(target.double())).cpu()
                for key, net in self.feature_networks.items():
                    features[key].append(net(target).double())
            self.target_features = {key: torch.cat(f) for key, f in features.items() if f}
            # "val_ab": the val photos' own colour distribution, fixed for every model
            self.cell_weights = metrics.ab_cell_weights(cells).to(self.device)
            for photos, target in zip(self._photos(), self._targets()):
                batch = Batch(target, target, available, self.cell_weights, protocol)
                # descriptive metrics (cf) are read against the photos' own value: the photos at
                # the protocol's geometry, never a Lab round trip of them (CT2's
                # eval_colorfullness reads the photos' folder)
                photo = photos.float() / 255
                photo_batch = Batch(photo, photo, available, self.cell_weights, protocol)
                for m in self.per_image_metrics:
                    if m.higher_is_better is None:
                        truth.setdefault(m.name, []).append(m.fn(photo, photo, photo_batch))
                    if m.pool_weight is not None:
                        weights.setdefault(m.name, []).append(m.pool_weight(batch))
            self.truth = {name: torch.cat(v) for name, v in truth.items()}
            self.image_weights = {name: torch.cat(v).double().cpu().numpy() for name, v in weights.items()}
        self.occupied_cells = int((cells > 0).sum())

    @classmethod
    def for_split(cls, val: LabSplit, nets: MetricNets | None = None, batch_size: int = 64,
                  protocol: ScoringProtocol = PRESETS["colorbench"]) -> "Scorer":
        return cls(val.L, val.rgb, nets, batch_size, getattr(val, "names", None), protocol)

    def __len__(self) -> int:
        return len(self.L)

    def subset(self, indices: list[int]) -> "Scorer":
        """A scorer of these val photos alone (an outside colorizer with predictions for some,
        ``--allow-missing``): its reference statistics (FID's features, the colour
        distribution) are those photos' own."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return Scorer(self.L[idx.to(self.L.device)], self.target_rgb[idx.to(self.target_rgb.device)], self.nets,
                      self.batch_size, [self.image_names[i] for i in indices], self.protocol)

    def _photos(self):
        """The val photos (uint8) batch by batch. Batches follow the L batches' device: a
        memory-mapped split (``MappedLabSplit``) reads rows on the host and hands them to the
        run's device."""
        for i in range(0, len(self.L), self.batch_size):
            yield self.target_rgb[i : i + self.batch_size].to(self.device)

    def _targets(self):
        """The ground truth batch by batch, sRGB in [0, 1] (``prepared_truth``)."""
        if self._truth_uint8 is not None:
            for truth in self._truth_uint8:
                yield truth.to(self.device).float() / 255
            return
        for photos in self._photos():
            yield prepared_truth(photos.float() / 255, self.protocol.ground_truth)

    @property
    def device(self) -> torch.device:
        return self.L[:1].device

    @property
    def notes(self) -> dict[str, str]:
        """The ``note`` of each metric's rows: the image count behind the set metrics (FID
        and KID are biased or noisy at small N), or the weights file a missing metric lacks."""
        if self.nets is None:
            return {}
        notes = {m: self.nets.notes.get(m, f"missing weights file {w.filename}") for m, w in self.nets.missing.items()}
        n = len(self)
        for name, m in METRICS.items():
            if m.kind == SET and name not in notes:
                notes[name] = f"n={n}" if n >= m.min_images else f"n={n}: needs {m.min_images}+ val images"
        return notes

    def ground_truth(self) -> dict[str, float]:
        """What the val photos themselves score where that is informative: the descriptive
        metrics (their colourfulness)."""
        return {name: v.double().mean().item() for name, v in self.truth.items()}

    def ground_truth_per_image(self) -> dict[str, np.ndarray]:
        """Per val image: the photo's own value of each descriptive metric (``cf``, which
        ``delta_cf`` compares set means of) and its share of each pooled metric's weight
        (``auc_rebal_weight``)."""
        return {**{name: v.double().cpu().numpy() for name, v in self.truth.items()},
                **{f"{name}_weight": w for name, w in self.image_weights.items()}}

    def ab_scores(self, ab: torch.Tensor) -> Scores:
        """Every metric of ``names`` for predicted ab (model scale, (N,2,H,W)): ``.means`` has
        the mean over images of the per-image ones and one value over the set for the set and
        derived ones; every per-image value is kept (``Scores``)."""
        return self._score(lambda i, L: ab[i : i + len(L)])

    def rgb_scores(self, rgb: torch.Tensor) -> Scores:
        """Every metric for predictions given as images ((N,3,H,W) uint8 sRGB in the split's
        order and size: an outside colorizer's files, ``bench score``), as ``ab_scores``."""
        if rgb.shape[0] != len(self) or rgb.shape[2:] != self.target_rgb.shape[2:]:
            raise ValueError(f"predictions of shape {tuple(rgb.shape)} for {len(self)} val photos of "
                             f"{tuple(self.target_rgb.shape[2:])} px")
        return self._score(lambda i, L: rgb[i : i + len(L)].to(L.device).float() / 255, rgb_given=True)

    @torch.inference_mode()
    def _score(self, ab_for_batch, set_metrics: bool = True, rgb_given: bool = False) -> Scores:
        # Predictions are made and scored one batch at a time, so a large val split never
        # holds all its predictions on the device at once.
        nets = self.nets or MetricNets()
        per_image: dict[str, list[torch.Tensor]] = {}
        features = {key: [] for key in self.feature_networks} if set_metrics else {}
        for i, target in zip(range(0, len(self.L), self.batch_size), self._targets()):
            L = self.L[i : i + self.batch_size]
            # 8-bit files (rgb_given) are taken as they are; a model's predictions as the protocol says
            pred = ab_for_batch(i, L) if rgb_given else as_predictions(
                model_to_rgb(L, ab_for_batch(i, L).to(L.device)), self.protocol.predictions_as)
            batch = Batch(pred, target, nets, self.cell_weights, self.protocol)
            for m in self.per_image_metrics:
                per_image.setdefault(m.name, []).append(m.fn(pred, target, batch))
            for key in features:
                features[key].append(self.feature_networks[key](pred).double())
        per_image = {name: torch.cat(v) for name, v in per_image.items()}
        features = {key: torch.cat(f) for key, f in features.items() if f}
        out = {}
        for name in self.names:
            m = METRICS[name]
            if m.kind == PER_IMAGE and name in self.image_weights and name in per_image:
                # a pooled metric (auc_rebal: all val pixels pooled)
                w = torch.as_tensor(self.image_weights[name], device=per_image[name].device)
                out[name] = ((per_image[name].double() * w).sum() / w.sum()).item()
            elif m.kind == PER_IMAGE and name in per_image:
                out[name] = per_image[name].double().mean().item()
            elif m.kind == DERIVED and all(n in per_image for n in m.needs):
                out[name] = m.derive(per_image, self.truth, self.protocol).item()
            elif m.kind == SET and m.network in features and len(self) >= m.min_images:
                out[name] = m.fn(features[m.network], self.target_features[m.network]).item()
            else:
                out[name] = math.nan
        kept = {name: v.double().cpu().numpy() for name, v in per_image.items()}
        return Scores(out, kept, features)

    def generator_scores(self, G: nn.Module) -> Scores:
        """``ab_scores`` of the ab that ``G`` predicts from the val photos' L."""
        return self._score(lambda i, L: predict_ab(G, L, len(L)))

    def curve_scores(self, G: nn.Module, set_metrics: bool = False) -> dict[str, float]:
        """What a training curve records of ``G`` now: the set value of every metric but the
        set metrics (FID, KID: their network's pass over the split costs minutes on a CPU),
        those too with ``set_metrics``; a metric without a value is left out."""
        return curve_values(self._score(lambda i, L: predict_ab(G, L, len(L)), set_metrics).means, set_metrics)

    def gray_scores(self) -> Scores:
        """The floor every model is read against: ab = 0, i.e. the grayscale input itself."""
        return self._score(lambda i, L: gray_ab(L))
