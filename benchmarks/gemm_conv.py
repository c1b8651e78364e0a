"""Per layer: torch's (oneDNN's) convolution against models/gemm_conv.py's GEMM path.

    python benchmarks/gemm_conv.py                 # batch 32, the grid in benchmarks/README.md
    python benchmarks/gemm_conv.py --batch 16

For a 4x4 stride-2 convolution C->C and a transposed one C->C/2 (the U-Net's layers) on
maps of 1x1 to 8x8, prints oneDNN's forward + backward time divided by the GEMM path's
(> 1: the GEMM is faster), median of --repeats, and whether ``GEMM_CHANNELS_PER_POSITION``
sends the layer down the GEMM path.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from models import gemm_conv
from models.gemm_conv import GemmConv2d, GemmConvTranspose2d, with_torch_layers


def seconds(layer: nn.Module, shape: tuple[int, ...], repeats: int) -> float:
    x = torch.randn(shape, requires_grad=True)
    times = []
    for _ in range(repeats + 1):  # the first one warms up
        start = time.perf_counter()
        layer(x).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rule = gemm_conv.GEMM_CHANNELS_PER_POSITION
    gemm_conv.GEMM_CHANNELS_PER_POSITION = 0  # time the GEMM path everywhere
    print(f"batch {args.batch}, {torch.get_num_threads()} threads; oneDNN time / GEMM time, forward + backward\n")
    print("| layer | C | input | positions | oneDNN ms | GEMM ms | ratio | GEMM by the rule |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    cases = [(GemmConv2d(c, c, 4, 2, 1, bias=False), c, px, (px // 2) ** 2) for c in (64, 128, 256, 512) for px in (2, 4, 8)]
    cases += [(GemmConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), c, px, px * px) for c in (128, 256, 512, 1024) for px in (1, 2, 4, 8)]
    for layer, c, px, positions in cases:
        shape = (args.batch, c, px, px)
        stock = with_torch_layers(copy.copy(layer))  # the same parameters, torch's class
        onednn = min(seconds(stock, shape, args.repeats), seconds(stock, shape, args.repeats))
        gemm = seconds(layer, shape, args.repeats)
        kind = "transposed conv" if isinstance(layer, nn.ConvTranspose2d) else "conv"
        print(
            f"| {kind} | {c} | {px}×{px} | {positions} | {onednn * 1e3:.1f} | {gemm * 1e3:.1f} | "
            f"{onednn / gemm:.2f} | {'yes' if c >= rule * positions else 'no'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
