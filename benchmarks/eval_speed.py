"""How fast is Colorbench's scoring? Times every metric on the val photos, batched as a run
computes it, against the straightforward per-image loop with scikit-image / numpy.

    .venv/bin/python benchmarks/eval_speed.py                      # ../shared/data/val, 64 px, CPU
    .venv/bin/python benchmarks/eval_speed.py --size 256 --device cuda --networks

The prediction scored is a fixed, imperfect colorization (the true ab, halved, plus noise),
so every metric does real work. Each row is the median of --runs timings. LPIPS and the
Inception features use randomly initialised networks when the weights are not installed
(speed only: the numbers themselves are not LPIPS or FID).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def median_time(fn, runs: int, sync=lambda: None) -> float:
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_val(folder: Path, size: int):
    from colorbench_datasets.images import find_images, load_rgb
    from colorbench_datasets.tensors import build_split

    if not folder.is_dir():
        sys.exit(f"error: no val folder {folder}; pass --val DIR (a folder of photos)")
    items = [(p.name, partial(load_rgb, p)) for p in find_images(folder)]
    split, skipped = build_split(items, size, False)
    return split


# --- the straightforward per-image references ---------------------------------------------

def sk_psnr(p, g):
    from skimage.metrics import peak_signal_noise_ratio

    return peak_signal_noise_ratio(g, p, data_range=1)


def sk_ssim(p, g):
    from skimage.metrics import structural_similarity

    return structural_similarity(g, p, data_range=1, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)


def sk_de00(p, g):
    from skimage.color import deltaE_ciede2000, rgb2lab

    return deltaE_ciede2000(rgb2lab(g), rgb2lab(p)).mean()


def np_cf(p, g):
    r, gg, b = (p * 255).transpose(2, 0, 1)
    rg, yb = r - gg, 0.5 * (r + gg) - b
    return np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())


def np_auc(p, g):
    from skimage.color import rgb2lab

    err = np.linalg.norm(rgb2lab(p)[..., 1:] - rgb2lab(g)[..., 1:], axis=-1)
    t = np.arange(151)
    return 100 * np.trapezoid([(err <= x).mean() for x in t], t) / 150


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--val", type=Path, default=ROOT.parent / "shared" / "data" / "val")
    ap.add_argument("--size", type=int, default=64, help="val crop size (the quick preset's 64 by default)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's); numpy/skimage run on one")
    ap.add_argument("--networks", action="store_true",
                    help="also time LPIPS and the Inception features (slow on a CPU), and Fréchet/KID math")
    args = ap.parse_args()

    from bench.score import metrics as M
    from colorbench_datasets.lab import model_to_rgb

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    val = load_val(args.val, args.size).to(device)
    gen = torch.Generator().manual_seed(0)
    ab = (0.5 * val.ab.cpu() + 0.05 * torch.randn(val.ab.shape, generator=gen)).to(device)
    n, bs = len(val), args.batch_size
    print(f"{n} val images from {args.val} at {args.size} px on {device} "
          f"({torch.get_num_threads()} threads); median of {args.runs} runs\n")

    pred = torch.cat([model_to_rgb(val.L[i:i + bs], ab[i:i + bs]) for i in range(0, n, bs)])
    target = val.rgb.float() / 255
    pred_np = [x.permute(1, 2, 0).double().cpu().numpy() for x in pred]
    target_np = [x.permute(1, 2, 0).double().cpu().numpy() for x in target]

    def batched(fn):
        def run():
            with torch.inference_mode():
                return [fn(pred[i:i + bs], target[i:i + bs]) for i in range(0, n, bs)]
        return run

    def per_image(fn):
        return lambda: [fn(p, g) for p, g in zip(pred_np, target_np)]

    def lab_to_rgb_loop():
        from skimage.color import lab2rgb

        L = ((val.L.cpu() + 1) * 50).double().numpy()
        A = (ab.cpu() * 110).double().numpy()
        return [lab2rgb(np.concatenate([L[i], A[i]]).transpose(1, 2, 0)) for i in range(n)]

    rows = [
        ("Lab -> sRGB", batched(lambda p, g: model_to_rgb(val.L[:len(p)], ab[:len(p)])), lab_to_rgb_loop),
        ("psnr", batched(M.psnr), per_image(sk_psnr)),
        ("ssim", batched(M.ssim), per_image(sk_ssim)),
        ("de00", batched(M.de00), per_image(sk_de00)),
        ("cf", batched(M.cf), per_image(np_cf)),
        ("auc", batched(M.auc), per_image(np_auc)),
        # what a run does: one Lab conversion per batch shared by de00 and auc
        ("all of the above", batched(lambda p, g: (model_to_rgb(val.L[:len(p)], ab[:len(p)]), M.score_batch(p, g))),
         lambda: [f() for f in (lab_to_rgb_loop, *(per_image(f) for f in (sk_psnr, sk_ssim, sk_de00, np_cf, np_auc)))]),
    ]
    results = []
    for name, ours, ref in rows:
        results.append((name, median_time(ours, args.runs, sync), median_time(ref, args.runs)))

    if args.networks:
        results += network_rows(pred, target, device, bs, args.runs, sync)

    print(f"{'metric':<22}{'batched (s)':>12}{'per-image (s)':>15}{'ratio':>8}")
    for name, ours, ref in results:
        print(f"{name:<22}{ours:>12.3f}{ref:>15.3f}{ref / ours:>7.1f}x")


def network_rows(pred, target, device, bs, runs, sync):
    """LPIPS and Inception batched vs one image at a time (random weights if not installed),
    and the Fréchet distance / KID of 2048-d features: ours vs scipy.linalg.sqrtm, the
    pytorch-fid way."""
    import torchvision
    from scipy import linalg

    from bench.score import metrics as M
    from models import metric_nets, pretrained

    def weights_or_random(key, random_state):
        weights = pretrained.known_weights()[key]
        if pretrained.cached_path(weights).is_file():  # never a download from a benchmark
            return pretrained.load_state_dict(weights)
        print(f"({weights.filename} not installed: timing a randomly initialised network)")
        return random_state()

    alex = weights_or_random("alexnet", lambda: torchvision.models.alexnet().state_dict())
    lp = metric_nets.lpips_alex(alex, pretrained.load_lpips_linear()).to(device)
    incep_state = weights_or_random("inception", lambda: torchvision.models.inception_v3(
        weights=None, num_classes=1008, aux_logits=False, init_weights=False).state_dict())
    inc = metric_nets.fid_inception(incep_state).to(device)
    n = len(pred)
    out = []
    with torch.inference_mode():
        out.append(("lpips", median_time(lambda: [M.lpips(pred[i:i + bs], target[i:i + bs], lp) for i in range(0, n, bs)], runs, sync),
                    median_time(lambda: [M.lpips(pred[i:i + 1], target[i:i + 1], lp) for i in range(n)], runs, sync)))
        feats_runs = max(1, runs // 2)
        out.append(("inception features", median_time(lambda: [inc(pred[i:i + bs]) for i in range(0, n, bs)], feats_runs, sync),
                    median_time(lambda: [inc(pred[i:i + 1]) for i in range(n)], feats_runs, sync)))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 2048, generator=g), torch.rand(n, 2048, generator=g) * 1.1

    def scipy_fid():
        xa, ya = x.double().numpy(), y.double().numpy()
        s1, s2 = np.cov(xa, rowvar=False), np.cov(ya, rowvar=False)
        covmean = linalg.sqrtm(s1 @ s2).real
        d = xa.mean(0) - ya.mean(0)
        return d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)

    out.append(("frechet distance", median_time(lambda: M.fid(x, y), runs), median_time(scipy_fid, 1)))
    out.append(("kid", median_time(lambda: M.kid(x, y), runs), float("nan")))
    return out


if __name__ == "__main__":
    main()
