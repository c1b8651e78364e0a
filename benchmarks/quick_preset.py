"""The README's first command, timed: `bench run` (quick preset) then `bench report`.

    python benchmarks/quick_preset.py                       # the built-in sample, 3 repeats
    python benchmarks/quick_preset.py --repeats 1 --data ../shared/data/train --val-data ../shared/data/val
    python benchmarks/quick_preset.py --repeats 1 --losses l1 --steps 100,200,300,500   # the step sweep
    python benchmarks/quick_preset.py --precision fp32      # what a CPU without native bf16 runs

Each repeat runs the two commands as a new user does (fresh processes, a fresh --out) and
prints a markdown table: wall time of each command, each cell's training time and median
step time (after warm-up), and whether colour shows: l1's PSNR and ΔE00 against gray, and
its colourfulness against the val photos' own. With several repeats, the median wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def bench(*args: str) -> float:
    """Run `bench ARGS` in a fresh process; its wall time in seconds."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def colour_check(out: Path, combination: str = "l1") -> dict:
    frame = pd.read_csv(out / "metrics.csv").groupby(["combination", "metric"])["value"].mean()
    if (combination, "psnr") not in frame:
        return {}
    return {
        "psnr vs gray": frame[(combination, "psnr")] - frame[("gray", "psnr")],
        "de00 vs gray": frame[("gray", "de00")] - frame[(combination, "de00")],
        "cf / truth": frame[(combination, "cf")] / frame[("ground-truth", "cf")],
    }


def cells(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("cells/*/seed*/metrics.json"))]


def markdown(frame: pd.DataFrame) -> str:
    def cell(v) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=None)
    parser.add_argument("--val-data", default=None)
    parser.add_argument("--losses", default=None, help="default: the quick preset's")
    parser.add_argument("--steps", default=None, help="comma-separated step budgets to sweep (default: the preset's)")
    parser.add_argument("--precision", default=None, help="fp32 times what a CPU without native bf16 runs (default: auto)")
    args = parser.parse_args()

    budgets = [None] if args.steps is None else [int(s) for s in args.steps.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in budgets:
            for repeat in range(args.repeats):
                out = Path(tmp) / f"run-{steps}-{repeat}"
                run_args = ["run", "-q", "--out", str(out)]
                for flag, value in (("--data", args.data), ("--val-data", args.val_data),
                                    ("--losses", args.losses), ("--steps", steps), ("--precision", args.precision)):
                    if value is not None:
                        run_args += [flag, str(value)]
                run_s = bench(*run_args)
                report_s = bench("report", str(out))
                config = json.loads((out / "config.json").read_text())
                row = {"steps": config.get("steps_per_cell"), "repeat": repeat, "precision": config.get("precision"),
                       "bench run s": run_s, "bench report s": report_s, "total s": run_s + report_s,
                       **colour_check(out)}
                for c in cells(out):
                    row[f"{c['combination']} s"] = c["seconds"]
                    row[f"{c['combination']} ms/step"] = 1000 * (c.get("step_seconds") or float("nan"))
                rows.append(row)
                print(f"steps {row['steps']} repeat {repeat}: {row['total s']:.0f} s", file=sys.stderr, flush=True)
    frame = pd.DataFrame(rows)
    print(markdown(frame))
    if args.repeats > 1:
        for steps, group in frame.groupby("steps"):
            print(f"\nsteps {steps}: median total {statistics.median(group['total s']):.0f} s over {len(group)} repeats")


if __name__ == "__main__":
    main()
