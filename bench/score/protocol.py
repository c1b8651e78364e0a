"""The protocol behind each number, recorded in config.json and shown in the report.

Colorization papers disagree on LPIPS's network and input range, FID's feature extractor,
resize and image count, and on how val photos are cropped, so their numbers cannot be
compared without these facts; a run writes them down as it scores.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from bench.score import stats
from bench.score.metrics import AB_GRID, AUC_MAX_THRESHOLD
from bench.score.per_image import set_resamples


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def val_preparation(resize: str, size: int) -> str:
    if resize == "squash":
        return f"resized to {size}x{size} ignoring the aspect ratio (PIL bicubic), no crop"
    return f"shorter side resized to {size} px (PIL bicubic, antialiased), centre crop {size}x{size}"


def metric_protocol(scorer, manifest: dict, size: int) -> dict:
    """``config.json``'s ``protocol``: how every metric was computed in this run."""
    nets = scorer.nets
    n = len(scorer)
    lpips_ok = nets is not None and nets.lpips is not None
    inception_ok = nets is not None and nets.inception is not None
    return {
        "val_photos": {
            "images": n,
            "preparation": val_preparation(manifest.get("resize", "crop"), size),
            "ground_truth": "the prepared photo, sRGB uint8",
        },
        "predictions": "the model's ab with the input's L, Lab -> sRGB in [0, 1], out-of-gamut colours clipped; "
                       "scored as float, no 8-bit rounding or file round trip",
        "psnr": "sRGB in [0, 1], data range 1, per image (all channels), mean over images",
        "ssim": "sRGB, Gaussian window sigma 1.5 truncated at 3.5 sigma, K1 0.01, K2 0.03, per channel, mean over images",
        "lpips": {
            "package": f"lpips {_version('lpips')}", "net": "alex", "version": "0.1",
            "trunk": "torchvision AlexNet IMAGENET1K_V1 (alexnet-owt-7be5be79.pth)",
            "input": "sRGB scaled to [-1, 1] (2x - 1)", "spatial": False, "computed": lpips_ok,
        },
        "fid": {
            "features": f"pytorch-fid {_version('pytorch-fid')} InceptionV3, FID weights pt_inception-2015-12-05, "
                        "2048-d pool3",
            "resize": "bilinear to 299x299 inside the network (align_corners False), input scaled to [-1, 1]",
            "images": n, "reference": "the val photos, prepared as above",
            "statistics": "float64 from features in memory, sample covariance (N - 1)", "computed": inception_ok,
        },
        "kid": {
            "kernel": "(x.y / 2048 + 1)^3, unbiased MMD^2",
            "subsets": "the whole set up to 1000 images, else 100 seeded subsets of 1000", "computed": inception_ok,
        },
        "de00": "CIEDE2000 (kL = kC = kH = 1) per pixel, skimage's Lab (D65), mean over pixels and images",
        "cf": "Hasler-Suesstrunk colourfulness on 0-255 sRGB, mean over images",
        "delta_cf": "|mean cf of the predictions - mean cf of the val photos|",
        "auc": f"per-pixel ab error, cumulative curve at thresholds 0..{AUC_MAX_THRESHOLD} step 1, trapezoid area, percent",
        "auc_rebal": {
            "weights": f"1 / frequency of the true colour's {AB_GRID:g}-unit ab cell among the val photos' pixels "
                       "(every occupied cell contributes equally), all val pixels pooled",
            "occupied_cells": scorer.occupied_cells,
        },
        "intervals": {
            "level": stats.LEVEL, "resamples": stats.N_BOOT, "seed": stats.BOOT_SEED,
            # recomputed from the features at scoring time; 0: none (no network, or too costly here)
            "fid_kid_resamples": set_resamples(n, scorer.device) if inception_ok else 0,
        },
    }


def protocol_lines(config: dict) -> list[str]:
    """Markdown bullets for the report; one line saying it is missing for older runs."""
    p = config.get("protocol")
    if not p:
        return ["- not recorded: the run was made before Colorbench recorded its scoring protocol"]
    lp, fid = p.get("lpips", {}), p.get("fid", {})
    val = p.get("val_photos", {})
    lines = [
        f"- **Val photos**: {val.get('images', '?')} images, {val.get('preparation', '?')}; predictions: {p.get('predictions', '?')}",
        f"- **LPIPS**: {lp.get('package', '?')}, net `{lp.get('net', '?')}` v{lp.get('version', '?')}, "
        f"inputs {lp.get('input', '?')}" + ("" if lp.get("computed") else " (not computed: weights missing)"),
        f"- **FID/KID**: {fid.get('features', '?')}; {fid.get('resize', '?')}; {fid.get('images', '?')} images "
        f"against {fid.get('reference', '?')}" + ("" if fid.get("computed") else " (not computed: weights missing)"),
        f"- **AuC**: {p.get('auc', '?')}; **auc_rebal** weights: {p.get('auc_rebal', {}).get('weights', '?')} "
        f"({p.get('auc_rebal', {}).get('occupied_cells', '?')} cells occupied)",
    ]
    return lines
