"""Colorbench: train one generator per loss combination and compare them.

The short Python API (each name is loaded on first use, so ``import bench`` is instant)::

    import bench
    cfg = bench.make_config("quick", losses="l1,100*l1+gan", seeds="0,1", data="photos/")
    out = bench.run_benchmark(cfg)             # the run folder, as `bench run` writes it
    report = bench.build_report([out])         # report.md, summary.csv, figures
    run = bench.load_run(out)                  # its config and metrics.csv, checked
    run.metrics.pivot_table(index="combination", columns="metric", values="value")

Every option takes the values its ``bench run`` flag takes, checked by the same rules; a bad
one raises ``bench.OptionError`` (a ValueError) naming it both ways (``keep_state``,
``--keep-state/--no-keep-state``) with the fix.

``bench.Scorer`` scores any generator (or any predicted ab) on a val split with the
registered metrics. Every other module is importable too; these are the ones kept stable.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the module that defines it
API = {
    "make_config": "bench.config.options",
    "RunConfig": "bench.config.options",
    "LaunchConfig": "bench.config.options",
    "OptionError": "bench.config.options",
    "run_benchmark": "bench.run.runner",
    "build_report": "bench.report.build",
    "ReportSettings": "bench.report.build",
    "load_run": "bench.rundir.read",
    "Scorer": "bench.score.scorer",
    "colorize_paths": "bench.colorize",
}

__all__ = [*API, "__version__"]


def __getattr__(name: str):
    if name not in API:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(API[name]), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
