"""The perceptual-loss training step with VGG16 in channels_last against NCHW.

    python benchmarks/perceptual_step.py             # the quick preset's cell: 64 px, nf 32, batch 32

``bench.train.loop.train_step`` with the ``perceptual`` term as ``bench run`` builds it (VGG16 in
channels_last, losses/perceptual.py), and the same with VGG16 kept in NCHW; the two take
turns step by step (train_step.py's ``measure``), median of --steps after 2 warm-up steps.
VGG16's weights are the ImageNet ones if cached, else random (the speed is the same).
"""
from __future__ import annotations

import argparse
import copy
import warnings
from functools import partial

import torch

from bench.train.loop import train_step
from losses.perceptual import PerceptualLoss, vgg16_features
from models import build_generator
from train_step import Config, measure  # this folder's: the same interleaved timing


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
    cfg = Config("perceptual", args.size, args.width, args.batch)
    variants = []
    for feats in (nchw, features):
        torch.manual_seed(0)
        G = build_generator("unet", args.size, args.width)
        opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
        terms = [("perceptual", 1.0, PerceptualLoss(feats, tag))]
        variants.append((partial(train_step, G, terms, opt, None), torch.contiguous_format))
    results = measure(variants, cfg, torch.device("cpu"), args.steps, warmup=2)
    print(f"{args.size} px, nf {args.width}, batch {args.batch}, {torch.get_num_threads()} threads, weights: {tag or 'ImageNet'}\n")
    print("| variant | s/step | GFLOP/s | vs NCHW |\n| --- | ---: | ---: | ---: |")
    base = results[0][0]
    for name, (seconds, gflop, _) in zip(("VGG16 NCHW", "VGG16 channels_last (bench run)"), results):
        print(f"| {name} | {seconds:.3f} | {gflop / seconds:.0f} | {base / seconds:.2f}× |")


if __name__ == "__main__":
    main()
