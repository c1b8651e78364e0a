"""The protocol behind each number, recorded in config.json and shown in the report.

Colorization papers disagree on LPIPS's network and input range, FID's feature extractor,
resize and image count, and on how val photos are cropped, so their numbers cannot be
compared without these facts; a run writes them down as it scores.
"""
from __future__ import annotations

from bench.score import stats
from bench.score.metrics import METRICS
from bench.score.per_image import set_resamples
from bench.score.presets import ScoringProtocol


def val_preparation(resize: str, size: int) -> str:
    """How the val photos were brought to ``size`` (the split's resize mode, datasets/tensors.py)."""
    if resize == "squash":
        return f"resized to {size}x{size} ignoring the aspect ratio (PIL bicubic), no crop"
    if resize == "cv2-squash":
        return (f"resized to {size}x{size} ignoring the aspect ratio with OpenCV's INTER_LINEAR semantics (bilinear, "
                "no antialias; DDColor's cv2.resize), rounded to 8 bits, no crop")
    if resize == "crop-bilinear":
        return (f"centre crop to the shorter side, then resized to {size}x{size} (PIL bilinear; CT2's CenterCrop "
                "then Resize)")
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
GENERAL = ("scoring", "val_photos", "predictions", "intervals")


TRUTHS = {
    "photo": "the prepared photo, sRGB uint8",
    "lab-float": "the prepared photo's Lab round trip (sRGB -> Lab -> sRGB), float",
    "lab-uint8": "the prepared photo's Lab round trip through float32 Lab, clipped and truncated to 8 bits by "
                 "skimage's rgb2lab and lab2rgb themselves (CT2's)",
}


def predictions_text(protocol: ScoringProtocol, outside: bool = False) -> str:
    if outside:  # its files are 8-bit already: --predictions-as changes nothing of them
        return "each colorizer's own 8-bit files, prepared to the val crop like the photos"
    eight_bits = {"uint8": "; rounded to 8 bits as a saved PNG (x * 255).round()",
                  "uint8-trunc": "; truncated to 8 bits as CT2's saved PNGs (255 * x).astype(uint8)"}
    return ("the model's ab with the input's L, Lab -> sRGB in [0, 1], out-of-gamut colours clipped"
            + eight_bits.get(protocol.predictions_as, "; scored as float, no 8-bit rounding or file round trip"))


def scoring_protocol_of(config: dict) -> ScoringProtocol:
    """The protocol a run (its config.json) was scored under: colorbench's before runs recorded it."""
    return ScoringProtocol.from_dict((config.get("protocol") or {}).get("scoring"))


def metric_protocol(scorer, manifest: dict, size: int) -> dict:
    """``config.json``'s ``protocol``: how every metric was computed in this run, each as its
    registration says (``register_metric(protocol=...)``)."""
    n = len(scorer)
    inception_ok = scorer.nets is not None and scorer.nets.get("inception") is not None
    return {
        "scoring": scorer.protocol.to_dict(),
        "val_photos": {
            "images": n,
            "preparation": val_preparation(manifest.get("val_resize") or manifest.get("resize", "crop"), size),
            "ground_truth": TRUTHS[scorer.protocol.ground_truth],
        },
        "predictions": predictions_text(scorer.protocol),
        **{name: describe_metric(m, scorer) for name, m in METRICS.items() if name in scorer.names},
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
    protocol = ScoringProtocol.from_dict(p.get("scoring"))
    lines = [f"- **Protocol**: `{protocol.label}` (docs/protocols.md)",
             f"- **Val photos**: {val.get('images', '?')} images, {val.get('preparation', '?')}; "
             f"ground truth: {val.get('ground_truth', '?')}; predictions: {p.get('predictions', '?')}"]
    lines += [f"- **{name}**: {_text(entry)}" for name, entry in p.items() if name not in GENERAL]
    outside = [e for e in config.get("external") or [] if isinstance(e, dict) and e.get("predictions")]
    if outside:
        lines.append(f"- **Outside colorizers' predictions**: {outside[0]['predictions']}; matched to the val photos by "
                     "file name without the extension")
    return lines
