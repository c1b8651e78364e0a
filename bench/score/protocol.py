"""The protocol behind each number, recorded in config.json and shown in the report.

Colorization papers disagree on LPIPS's network and input range, FID's feature extractor,
resize and image count, and on how val photos are cropped, so their numbers cannot be
compared without these facts; a run writes them down as it scores.
"""
from __future__ import annotations

from bench.score import stats
from bench.score.metrics import METRICS
from bench.score.per_image import set_resamples


def val_preparation(resize: str, size: int) -> str:
    if resize == "squash":
        return f"resized to {size}x{size} ignoring the aspect ratio (PIL bicubic), no crop"
    return f"shorter side resized to {size} px (PIL bicubic, antialiased), centre crop {size}x{size}"


def describe_metric(metric, scorer):
    """A metric's registered protocol: its line, or its facts (with ``computed``: whether
    the network it declares was there)."""
    entry = metric.protocol(scorer) if callable(metric.protocol) else metric.protocol
    if metric.network is not None:
        entry = {**(entry if isinstance(entry, dict) else {"how": entry}),
                 "computed": scorer.nets is not None and scorer.nets.get(metric.network) is not None}
    return entry


# config.json protocol keys that are not metrics
GENERAL = ("val_photos", "predictions", "intervals")


def metric_protocol(scorer, manifest: dict, size: int) -> dict:
    """``config.json``'s ``protocol``: how every metric was computed in this run, each as its
    registration says (``register_metric(protocol=...)``)."""
    n = len(scorer)
    inception_ok = scorer.nets is not None and scorer.nets.get("inception") is not None
    return {
        "val_photos": {
            "images": n,
            "preparation": val_preparation(manifest.get("resize", "crop"), size),
            "ground_truth": "the prepared photo, sRGB uint8",
        },
        "predictions": "the model's ab with the input's L, Lab -> sRGB in [0, 1], out-of-gamut colours clipped; "
                       "scored as float, no 8-bit rounding or file round trip",
        **{name: describe_metric(m, scorer) for name, m in METRICS.items()},
        "intervals": {
            "level": stats.LEVEL, "resamples": stats.N_BOOT, "seed": stats.BOOT_SEED,
            # recomputed from the features at scoring time; 0: none (no network, or too costly here)
            "fid_kid_resamples": set_resamples(n, scorer.device) if inception_ok else 0,
        },
    }


def _text(entry) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    text = "; ".join(f"{k}: {v}" if k != "how" else str(v) for k, v in entry.items() if k != "computed")
    return text + (" (not computed: weights missing)" if entry.get("computed") is False else "")


def protocol_lines(config: dict) -> list[str]:
    """Markdown bullets for the report, one per metric the run recorded (older runs: one
    line saying it is missing)."""
    p = config.get("protocol")
    if not p:
        return ["- not recorded: the run was made before Colorbench recorded its scoring protocol"]
    val = p.get("val_photos", {})
    lines = [f"- **Val photos**: {val.get('images', '?')} images, {val.get('preparation', '?')}; "
             f"predictions: {p.get('predictions', '?')}"]
    lines += [f"- **{name}**: {_text(entry)}" for name, entry in p.items() if name not in GENERAL]
    return lines
