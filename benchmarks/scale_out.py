"""`--launcher local --max-parallel N` against the serial run of the same grid: cells per hour.

    python benchmarks/scale_out.py --data ../shared/data/train --val-data ../shared/data/val
    python benchmarks/scale_out.py --repeats 3 --losses mse,l1,gan,perceptual --seeds 0,1

Each repeat runs `bench run` in a fresh process into a fresh --out, first serially as a user
runs it by default (one cell at a time on every core), then with the local launcher (N
workers, the cores split between them). Prints a markdown table: wall time, cells per hour,
and the median speed-up. Whether the two tables agree to the last bit is a separate claim,
tested in tests/test_launch.py (it needs the same --max-parallel on both sides, which fixes
each cell's threads; here the serial run keeps its default, as a user's would).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(args: list[str]) -> float:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", "run", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench run {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--val-data", default=None)
    parser.add_argument("--losses", default="mse,l1,gan,perceptual")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--max-parallel", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--extra", default="", help="more `bench run` options, e.g. '--precision fp32'")
    args = parser.parse_args()

    common = ["--losses", args.losses, "--seeds", args.seeds, "-q", *args.extra.split()]
    if args.data:
        common += ["--data", args.data] + (["--val-data", args.val_data] if args.val_data else [])
    n_cells = len(args.losses.split(",")) * len(args.seeds.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            serial = timed_run([*common, "--out", str(Path(tmp) / f"serial{repeat}")])
            local = timed_run([*common, "--out", str(Path(tmp) / f"local{repeat}"), "--launcher", "local",
                               "--max-parallel", str(args.max_parallel)])
            rows.append((serial, local))
            print(f"repeat {repeat + 1}: serial {serial:.0f} s, local x{args.max_parallel} {local:.0f} s", flush=True)
    print(f"\n{n_cells} cells ({args.losses} x seeds {args.seeds}), {os.cpu_count()} cores, {args.extra or 'defaults'}\n")
    print("| run | serial (s) | local (s) | serial cells/h | local cells/h | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i, (serial, local) in enumerate(rows, 1):
        print(f"| {i} | {serial:.0f} | {local:.0f} | {3600 * n_cells / serial:.0f} | {3600 * n_cells / local:.0f} "
              f"| {serial / local:.2f}x |")
    print(f"\nmedian speed-up: {statistics.median(s / lo for s, lo in rows):.2f}x")


if __name__ == "__main__":
    main()
