"""The paper preset's cost, counted: GFLOP per photo of one training step per combination,
and the grid's projected wall time on N GPUs at a sustained rate R (docs/scale.md).

    python benchmarks/paper_flops.py                        # counts on the CPU (about a minute)
    python benchmarks/paper_flops.py --tflops 50,100,200 --gpus 1,4,8,15

``torch.utils.flop_counter`` over one ``bench.train.loop.train_step`` (forward and backward, G and,
for GAN terms, D) at the paper preset's 256 px and widths, batch 2, divided per photo. The
perceptual term's VGG16 is random-initialised when its weights are missing: same FLOPs.
The projection packs the grid's cells onto GPUs longest first (a cell never splits) and
divides by R; it is a projection, not a measurement.
"""
from __future__ import annotations

import argparse
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.config.options import make_config
from bench.run.launch import relative_cost
from bench.train.loop import adam, build_terms, make_generator, train_step
from losses import LOSSES, parse_losses


def gflop_per_photo(combo, settings, options, batch: int = 2) -> float:
    G = make_generator(settings, 0)
    terms = build_terms(combo, options, 0)
    critic = next((t for name, _, t in terms if LOSSES[name].adversarial), None)
    cpu = torch.device("cpu")
    opt_D = adam(critic.discriminator.parameters(), settings, cpu) if critic is not None else None
    L = torch.randn(batch, 1, settings.size, settings.size)
    ab = 0.3 * torch.randn(batch, 2, settings.size, settings.size)
    with FlopCounterMode(display=False) as counter:
        train_step(G, terms, adam(G.parameters(), settings, cpu), opt_D, L, ab)
    return counter.get_total_flops() / batch / 1e9


def makespan(cells: list[float], gpus: int) -> float:
    """The busiest GPU's load when cells are handed out longest first."""
    loads = [0.0] * gpus
    for cost in sorted(cells, reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflops", default="50,100,200", help="sustained TFLOP/s per GPU to project with")
    parser.add_argument("--gpus", default="1,4,8,15")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=8000, help="train photos (the tutorial's COCO split)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    cfg = make_config("paper", device="cpu")
    settings, options = cfg.train_settings("fp32"), cfg.loss_options(torch.device("cpu"))
    photos = cfg.epochs * args.photos
    print(f"paper preset: {cfg.size} px, width {cfg.width}, {cfg.epochs} epochs of {args.photos} photos\n")
    print("| combination | GFLOP per photo | PFLOP per cell | relative_cost |")
    print("| --- | ---: | ---: | ---: |")
    cells = []
    for combo in parse_losses(cfg.losses):
        gflop = gflop_per_photo(combo, settings, options)
        cells += [gflop * photos / 1e6] * args.seeds
        print(f"| `{combo.name}` | {gflop:.1f} | {gflop * photos / 1e6:.1f} | {relative_cost(combo.spec)} |")
    print(f"\ngrid: {len(cells)} cells, {sum(cells):.0f} PFLOP\n")
    rates = [float(r) for r in args.tflops.split(",")]
    print("| GPUs | busiest GPU (PFLOP) | " + " | ".join(f"R = {r:g} TFLOP/s" for r in rates) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in rates) + " |")
    for n in (int(g) for g in args.gpus.split(",")):
        load = makespan(cells, n)
        print(f"| {n} | {load:.1f} | " + " | ".join(f"{load * 1e15 / (r * 1e12) / 3600:.2f} h" for r in rates) + " |")


if __name__ == "__main__":
    main()
