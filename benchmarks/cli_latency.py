"""How fast does the CLI answer? Times `bench run --help`, `bench score --help`, `bench run
--size 0` (a refusal) and `bench report --help`, each in a fresh process, and prints the
median of --runs, with whether the process imported torch.

    .venv/bin/python benchmarks/cli_latency.py
    .venv/bin/python benchmarks/cli_latency.py --runs 9

Each process is `python -c` running the CLI's `main` and then reporting whether torch was
imported, so the time is the interpreter's start, the CLI's imports and click's work.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [
    ["run", "--help"],
    ["score", "--help"],
    ["run", "--size", "0"],
    ["report", "--help"],
]

PROBE = """
import sys
from bench.cli import main
try:
    main(sys.argv[1:], prog_name="bench")
except SystemExit:
    pass
sys.__stderr__.write("TORCH=%s\\n" % ("torch" in sys.modules))
"""


def one_run(args: list[str]) -> tuple[float, bool, int]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    torch = "TORCH=True" in done.stderr
    return seconds, torch, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    baseline = [one_run([])[0] for _ in range(args.runs)]  # `bench` alone: the interpreter and click
    print(f"`bench` (no command) median {statistics.median(baseline):.2f} s over {args.runs} runs\n")
    print("| command | median s | min–max s | imports torch |")
    print("| --- | ---: | --- | --- |")
    for command in COMMANDS:
        times, torch = [], set()
        for _ in range(args.runs):
            seconds, imported, _ = one_run(command)
            times.append(seconds)
            torch.add(imported)
        print(f"| `bench {' '.join(command)}` | {statistics.median(times):.2f} | {min(times):.2f}–{max(times):.2f} | "
              f"{'yes' if torch == {True} else 'no' if torch == {False} else 'sometimes'} |")


if __name__ == "__main__":
    main()
