"""The networks of one run's metrics, loaded once from what the registered metrics declare
(builders in ``models.metric_nets``); a missing file leaves exactly its metrics missing."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn

from bench.score.metrics import METRICS
from bench.score.presets import PRESETS, ScoringProtocol
from models.metric_nets import NETWORKS, network_options
from models.pretrained import WeightsFile, WeightsUnavailable

log = logging.getLogger("colorbench")


@dataclass
class MetricNets:
    """The networks of one run, loaded once, by ``NETWORKS`` key; a metric whose network is
    missing maps to the file it lacks in ``missing`` (its reason in ``reasons``, its
    metrics.csv note in ``notes``)."""

    networks: dict[str, nn.Module] = field(default_factory=dict)
    missing: dict[str, WeightsFile] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metrics.csv's note for each missing metric

    def get(self, key: str) -> nn.Module | None:
        return self.networks.get(key)

    @property
    def lpips(self) -> nn.Module | None:
        return self.networks.get("lpips-net")

    @property
    def inception(self) -> nn.Module | None:
        return self.networks.get("inception")


def load_metric_nets(device="cpu", strict: bool = False, metrics=None,
                     protocol: ScoringProtocol = PRESETS["colorbench"]) -> MetricNets:
    """The networks the registered metrics (``bench.score.metrics.METRICS``, or ``metrics``) declare,
    on ``device``, as ``protocol`` wants them (LPIPS's trunk, FID's Inception). A missing file
    raises under ``strict`` (``--strict-weights``), else warns and leaves that network, and so
    exactly the metrics that need it, out."""
    metrics = METRICS if metrics is None else metrics
    metrics = {name: m for name, m in metrics.items() if protocol.scores(name)}
    nets = MetricNets()
    needed: dict[str, list[str]] = {}
    for name, metric in metrics.items():
        if metric.network is not None:
            needed.setdefault(metric.network, []).append(name)
    for key, names in needed.items():
        if key not in NETWORKS:
            raise KeyError(f"metric {names[0]} needs network {key!r}; known: {', '.join(NETWORKS)}")
        try:
            nets.networks[key] = NETWORKS[key](**network_options(key, protocol)).to(device)
        except WeightsUnavailable as exc:
            if strict:
                raise
            for m in names:
                nets.missing[m], nets.reasons[m], nets.notes[m] = exc.weights, str(exc), exc.note
            log.warning(
                exc.one_line(f"{' and '.join(m.upper() for m in names)} recorded as missing, the other metrics computed")
            )
    return nets
