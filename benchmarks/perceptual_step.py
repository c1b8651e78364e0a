"""The perceptual-loss training step with VGG16 in channels_last against NCHW.

    python benchmarks/perceptual_step.py             # the quick preset's cell: 64 px, nf 32, batch 32

``bench.train.train_step`` with the ``perceptual`` term as ``bench run`` builds it (VGG16 in
channels_last, losses/perceptual.py), and the same with VGG16 kept in NCHW; the two take
turns step by step, median of --steps after 2 warm-up steps. VGG16's weights are the
ImageNet ones if cached, else random (the speed is the same).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch

from bench.train import train_step
from losses.perceptual import PerceptualLoss, vgg16_features
from models import build_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-VGG fallback's banner
        features, tag = vgg16_features("cpu", False)
    nchw = copy.deepcopy(features).to(memory_format=torch.contiguous_format)
    nchw.memory_format = torch.contiguous_format  # as VGGFeatures ran before channels_last
    variants = {}
    for name, feats in (("VGG16 NCHW", nchw), ("VGG16 channels_last (bench run)", features)):
        torch.manual_seed(0)
        G = build_generator("unet", args.size, args.width)
        opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
        variants[name] = (G, [("perceptual", 1.0, PerceptualLoss(feats, tag))], opt)
    g = torch.Generator().manual_seed(0)
    L = torch.rand(args.batch, 1, args.size, args.size, generator=g) * 2 - 1
    ab = (torch.rand(args.batch, 2, args.size, args.size, generator=g) - 0.5) * 0.5

    def step(G, terms, opt) -> float:
        start = time.perf_counter()
        train_step(G, terms, opt, None, L, ab)
        return time.perf_counter() - start

    for v in variants.values():
        step(*v), step(*v)
    times = {name: [] for name in variants}
    for _ in range(args.steps):
        for name, v in variants.items():
            times[name].append(step(*v))
    base = statistics.median(times["VGG16 NCHW"])
    print(f"{args.size} px, nf {args.width}, batch {args.batch}, {torch.get_num_threads()} threads, weights: {tag or 'ImageNet'}\n")
    print("| variant | s/step | vs NCHW |\n| --- | ---: | ---: |")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.3f} | {base / statistics.median(t):.2f}× |")


if __name__ == "__main__":
    main()
