"""Does bf16 training change the scores? A bf16 run against fp32 runs of the same config.

Trains ``--losses`` once in bf16 (seed 0) and in fp32 with seeds 0 and 1, scores all of them
(scoring is always fp32), and prints a markdown table per combination and metric:

* ``|bf16 - fp32|``: what bf16 autocast changed, same seed, same data, same init;
* ``|seed 1 - seed 0|``: what changing only the seed changes in fp32 -- the tolerance.
  A precision whose effect is no larger than a different seed's cannot change a conclusion
  the harness draws from one seed.

    .venv/bin/python benchmarks/precision_check.py --data ../shared/data/train \\
        --val-data ../shared/data/val --losses l1 --epochs 1

On a CPU without native bf16 (no AMX / AVX512-BF16) oneDNN emulates it: the numbers are
those of bf16 (bf16 inputs, fp32 accumulation) but the run is ~10x slower than fp32.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from bench.config.options import make_config
from bench.rundir.read import read_metrics
from bench.run.runner import run_benchmark
from bench.rundir.layout import BASELINES


def scores(out: Path) -> dict[tuple[str, int, str], float]:
    frame = read_metrics(out)
    frame = frame[~frame.combination.isin(BASELINES) & frame.value.notna()]
    return {(r.combination, int(r.seed), r.metric): float(r.value) for r in frame.itertuples()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="default: the built-in sample set (a smoke test only)")
    parser.add_argument("--val-data", default=None)
    parser.add_argument("--losses", default="l1")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="results/precision-check", help="two run folders go under it (resumable)")
    args = parser.parse_args()

    common = dict(data=args.data, val_data=args.val_data, losses=args.losses, epochs=args.epochs, device=args.device)
    fp32 = run_benchmark(make_config(args.preset, precision="fp32", seeds=(0, 1), out=f"{args.out}/fp32", **common))
    bf16 = run_benchmark(make_config(args.preset, precision="bf16", seeds=(0,), out=f"{args.out}/bf16", **common))
    a, b = scores(fp32), scores(bf16)

    print(f"\n`--preset {args.preset} --losses {args.losses} --epochs {args.epochs}`, data {args.data or 'sample'}\n")
    print("| combination | metric | fp32 seed 0 | fp32 seed 1 | bf16 seed 0 | \\|bf16 − fp32\\| | \\|seed 1 − seed 0\\| | within |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    within_all = True
    for (combo, seed, metric), x0 in a.items():
        if seed != 0 or (combo, 0, metric) not in b:
            continue
        x1, y = a.get((combo, 1, metric), math.nan), b[(combo, 0, metric)]
        drift, spread = abs(y - x0), abs(x1 - x0)
        within = drift <= spread
        within_all &= within
        print(f"| {combo} | {metric} | {x0:.4f} | {x1:.4f} | {y:.4f} | {drift:.4f} | {spread:.4f} | {'yes' if within else 'NO'} |")
    print(f"\nbf16 within the seed-to-seed spread on every metric: {'yes' if within_all else 'no'}")


if __name__ == "__main__":
    main()
