"""Training-step throughput: Colorbench's step against the reference tutorial's step.

The reference is the public "U-Net + conditional GAN" colorization tutorial's step as
written there: fp32, NCHW, plain Adam, and a ``loss.item()`` per logged loss every step.
Colorbench's step is ``bench.train.loop.train_step`` with its settings (fused Adam, set_to_none,
no per-step host sync) for each precision and memory format. Same networks, same math:
pix2pix U-Net + 70x70 PatchGAN, L1 for G-only, 100*L1 + vanilla GAN for the GAN step.

    python benchmarks/train_step.py                     # every config in the issue's table
    python benchmarks/train_step.py --configs 64-nf32 --steps 10

Prints a markdown table: images/s, GFLOP per step (torch.utils.flop_counter), achieved
GFLOP/s, and the ratio to the reference on this machine (median of --steps timed steps
after --warmup untimed ones; the variants of a row group take turns step by step).
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.config.machine import cpu_has_native_bf16
from bench.train.loop import autocast_context, default_channels_last, for_device, train_step
from losses.adversarial import AdversarialLoss, GANLoss
from losses.pixel import PixelLoss
from models import build_discriminator, build_generator


@dataclass(frozen=True)
class Config:
    name: str
    size: int
    width: int
    batch: int


CONFIGS = {
    c.name: c
    for c in (
        Config("256", 256, 64, 16),
        Config("64-nf64", 64, 64, 32),
        Config("64-nf32", 64, 32, 32),
    )
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def networks(cfg: Config, gan: bool, device, memory_format):
    torch.manual_seed(0)
    G = build_generator("unet", cfg.size, cfg.width).to(device, memory_format=memory_format)
    D = build_discriminator("patchgan", in_channels=3).to(device, memory_format=memory_format) if gan else None
    return G, D


def reference_step_fn(cfg: Config, gan: bool, device):
    """The tutorial's ``MainModel.optimize`` / ``pretrain_generator`` step, as published, on
    torch's own convolution layers (Colorbench's cells run tiny maps as GEMMs on a CPU)."""
    G, D = networks(cfg, gan, device, torch.contiguous_format)  # torch's own layers
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999)) if gan else None
    bce = nn.BCEWithLogitsLoss()
    meters: list[float] = []

    def step(L, ab):
        fake = G(L)
        if not gan:
            loss = F.l1_loss(fake, ab)
            opt_G.zero_grad()
            loss.backward()
            opt_G.step()
            meters.append(loss.item())
            return
        D.train()
        D.requires_grad_(True)
        opt_D.zero_grad()
        fake_image = torch.cat([L, fake], 1)
        fake_preds = D(fake_image.detach())
        loss_D_fake = bce(fake_preds, torch.zeros_like(fake_preds))
        real_preds = D(torch.cat([L, ab], 1))
        loss_D_real = bce(real_preds, torch.ones_like(real_preds))
        loss_D = (loss_D_fake + loss_D_real) * 0.5
        loss_D.backward()
        opt_D.step()
        G.train()
        D.requires_grad_(False)
        opt_G.zero_grad()
        fake_preds = D(fake_image)
        loss_G_GAN = bce(fake_preds, torch.ones_like(fake_preds))
        loss_G_L1 = F.l1_loss(fake, ab) * 100
        loss_G = loss_G_GAN + loss_G_L1
        loss_G.backward()
        opt_G.step()
        meters.extend(x.item() for x in (loss_D_fake, loss_D_real, loss_D, loss_G_GAN, loss_G_L1, loss_G))

    return step, torch.contiguous_format


def colorbench_step_fn(cfg: Config, gan: bool, device, precision: str, channels_last: bool, compile: bool = False):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    G, D = networks(cfg, gan, device, memory_format)
    G, D = for_device(G, device, memory_format), for_device(D, device, memory_format) if gan else None
    if compile:
        G.compile()  # as `bench run --compile` does
    terms = [("l1", 100.0 if gan else 1.0, PixelLoss(F.l1_loss))]
    if gan:
        terms.append(("gan", 1.0, AdversarialLoss(D, GANLoss("vanilla"))))
    fused = dict(lr=2e-4, betas=(0.5, 0.999), fused=True)
    opt_G = torch.optim.Adam(G.parameters(), **fused)
    opt_D = torch.optim.Adam(D.parameters(), **fused) if gan else None
    autocast = autocast_context(precision, device)

    def step(L, ab):
        train_step(G, terms, opt_G, opt_D, L, ab, autocast)

    return step, memory_format


def measure(variants, cfg: Config, device, steps: int, warmup: int) -> list[tuple[float, float, float]]:
    """(median seconds per step, GFLOP per step, seconds of the first step) of each
    ``(step, memory_format)``; the first step includes autotuning and compilation.

    The variants take turns, one step each per round, so a slow spell of a shared machine
    (turbo, a neighbour's job) hits all of them alike instead of whichever ran then.
    """
    g = torch.Generator().manual_seed(0)
    L = (torch.rand(cfg.batch, 1, cfg.size, cfg.size, generator=g) * 2 - 1).to(device)
    ab = ((torch.rand(cfg.batch, 2, cfg.size, cfg.size, generator=g) - 0.5) * 0.5).to(device)
    inputs = [(L.contiguous(memory_format=mf), ab.contiguous(memory_format=mf)) for _, mf in variants]
    first = []
    for (step, _), x in zip(variants, inputs):
        sync(device)
        start = time.perf_counter()
        step(*x)
        sync(device)
        first.append(time.perf_counter() - start)
        for _ in range(warmup - 1):
            step(*x)
    times: list[list[float]] = [[] for _ in variants]
    for _ in range(steps):
        for (step, _), x, t in zip(variants, inputs, times):
            sync(device)
            start = time.perf_counter()
            step(*x)
            sync(device)
            t.append(time.perf_counter() - start)
    flops = []
    for (step, _), x in zip(variants, inputs):
        counter = FlopCounterMode(display=False)
        with counter:
            step(*x)
        flops.append(counter.get_total_flops() / 1e9)
    return [(statistics.median(t), f, s) for t, f, s in zip(times, flops, first)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (the issue's machine: 2)")
    parser.add_argument("--precisions", default=None, help="default: fp32 plus bf16 where it runs natively")
    parser.add_argument("--compile", action="store_true", help="also time `bench run --compile` (torch.compile of G)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak for the precision measured (H100 SXM bf16: 989), "
                             "to add a %% of peak column")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cudnn.benchmark = True
    native_bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
    precisions = args.precisions.split(",") if args.precisions else ["fp32"] + (["bf16"] if native_bf16 else [])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; native bf16: {native_bf16}; median of {args.steps} steps\n")
    peak = f" % of {args.peak_tflops:g} TFLOP/s |" if args.peak_tflops else ""
    print(f"| config | step | variant | img/s | GFLOP/step | GFLOP/s | vs reference | first step s |{peak}")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if peak else ""))
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        for gan in (False, True):
            kind = "GAN (D+G, 100·L1)" if gan else "G only (L1)"
            variants = [("reference (tutorial)", lambda: reference_step_fn(cfg, gan, device))]
            for precision in precisions:
                for cl in (False, True):
                    label = f"colorbench {precision} {'channels_last' if cl else 'NCHW'}"
                    variants.append((label, lambda p=precision, c=cl: colorbench_step_fn(cfg, gan, device, p, c)))
                if args.compile:
                    cl = default_channels_last(device, precision)  # what `bench run` uses
                    label = f"colorbench {precision} {'channels_last' if cl else 'NCHW'} --compile"
                    variants.append((label, lambda p=precision, c=cl: colorbench_step_fn(cfg, gan, device, p, c, True)))
            results = measure([make() for _, make in variants], cfg, device, args.steps, args.warmup)
            ref = results[0][0]
            for (label, _), (seconds, gflop, first) in zip(variants, results):
                print(
                    f"| {cfg.size} px nf{cfg.width} b{cfg.batch} | {kind} | {label} | {cfg.batch / seconds:.1f} | "
                    f"{gflop:.0f} | {gflop / seconds:.0f} | {ref / seconds:.2f}× | {first:.1f} |"
                    + (f" {100 * gflop / seconds / 1e3 / args.peak_tflops:.0f} % |" if peak else ""),
                    flush=True,
                )


if __name__ == "__main__":
    main()
