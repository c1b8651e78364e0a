"""The GPU-only paths of issue #25, measured: one paper-size training step's gradients in
each precision against fp32, and the Scorer on a paper-size val split (time, peak memory,
FID/KID replicates). benchmarks/gpu_check.sh runs it; on a CPU it checks itself:

    .venv/bin/python benchmarks/gpu_paths.py --device cpu --size 64 --width 8 --photos 64

Photos are synthetic (smooth random colour fields): the GPU machine has no photos, and only
time, memory and gradient agreement are measured here. LPIPS/Inception run with random
weights when theirs are not installed: their numbers are no LPIPS or FID.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F


def synthetic_split(n: int, size: int, seed: int = 0):
    from colorbench_datasets.tensors import rgb_uint8_to_split

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    rgb = (F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1) * 255).to(torch.uint8)
    return rgb_uint8_to_split(rgb, [f"p{i}.png" for i in range(n)])


def gradients(precision: str, scaled: bool, device: torch.device, size: int, width: int) -> torch.Tensor:
    """G's and D's gradients, flattened, after one step of `100*l1+gan` on a fixed batch."""
    from bench.config.options import TrainSettings
    from bench.train.loop import autocast_context, build_cell, train_step
    from losses import LossOptions, parse_losses

    (combo,) = parse_losses("100*l1+gan")
    split = synthetic_split(16, size)
    settings = TrainSettings(size=size, width=width, batch_size=16, precision=precision)
    cell = build_cell(combo, 0, split, settings, LossOptions(disc_width=width, device=str(device)), device,
                      torch.contiguous_format)
    got = []
    for net, opt in ((cell.G, cell.opt_G), (cell.D, cell.opt_D)):
        def record(*_, net=net, opt=opt):
            scale = getattr(opt, "grad_scale", None)
            got.append(torch.cat([p.grad.float().flatten() / (1.0 if scale is None else scale.item())
                                  for p in net.parameters() if p.grad is not None]))
        opt.step = record
    scalers = (cell.scaler_G, cell.scaler_D) if scaled else (None, None)
    L, ab = split.L.to(device), split.ab.to(device)
    train_step(cell.G, cell.terms, cell.opt_G, cell.opt_D, L, ab, autocast_context(precision, device), scalers=scalers)
    return torch.cat(got[::-1]).cpu()  # D's step runs first


def precision_rows(device: torch.device, size: int, width: int) -> None:
    print(f"\n## One `100*l1+gan` step at {size} px, width {width}: gradients against fp32")
    ref = gradients("fp32", False, device, size, width)
    cases = [("bf16", False), ("fp16", True), ("fp16", False)] if device.type == "cuda" else [("bf16", False)]
    for precision, scaled in cases:
        try:
            g = gradients(precision, scaled, device, size, width)
        except RuntimeError as exc:
            print(f"| {precision} | failed: {str(exc).splitlines()[0][:120]} |")
            continue
        finite = torch.isfinite(g).all().item()
        gap = ((g - ref).norm() / ref.norm()).item() if finite else float("nan")
        label = precision + (" + GradScaler" if scaled else (" without a loss scale" if precision == "fp16" else ""))
        print(f"| {label} | relative gradient difference {gap:.4f} | finite: {finite} |")


def scorer_rows(device: torch.device, photos: int, size: int) -> None:
    import torchvision

    from bench.score.networks import MetricNets
    from bench.score.per_image import replicates_frame, set_resamples
    from bench.score.scorer import Scorer
    from models import metric_nets, pretrained

    def weights_or_random(key, random_state):
        weights = pretrained.known_weights()[key]
        if pretrained.cached_path(weights).is_file():
            return pretrained.load_state_dict(weights)
        print(f"({weights.filename} not installed: timing a randomly initialised network)")
        return random_state()

    alex = weights_or_random("alexnet", lambda: torchvision.models.alexnet().state_dict())
    inception = weights_or_random("inception", lambda: torchvision.models.inception_v3(
        weights=None, num_classes=1008, aux_logits=False, init_weights=False).state_dict())
    nets = MetricNets({"lpips-net": metric_nets.lpips_alex(alex, pretrained.load_lpips_linear()).to(device),
                       "inception": metric_nets.fid_inception(inception).to(device)})
    val = synthetic_split(photos, size, seed=1).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    started = time.perf_counter()
    scorer = Scorer.for_split(val, nets)
    scores = scorer.gray_scores()
    sync()
    scored = time.perf_counter() - started
    n_boot = set_resamples(photos, device)
    started = time.perf_counter()
    reps = replicates_frame("gray", None, scorer, scores, n_boot=n_boot)
    sync()
    replicated = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(f"\n## Scorer on {photos} photos at {size} px on {device}")
    print(f"| scoring every metric (gray) | {scored:.1f} s |")
    print(f"| FID/KID replicates: {n_boot} (set_resamples) | {replicated:.1f} s, {len(reps)} rows |")
    print(f"| peak GPU memory | {peak:.1f} GiB |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--photos", type=int, default=2000)
    args = ap.parse_args()
    device = torch.device(args.device)
    precision_rows(device, args.size, args.width)
    scorer_rows(device, args.photos, args.size)


if __name__ == "__main__":
    main()
