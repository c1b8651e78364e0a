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


class later:  # noqa: N801 - used like a deferred ``import``
    """A module (``later("pandas")``) or a name in one (``later("bench.run.runner:run_benchmark")``),
    imported on first use: called, an attribute read, iterated or searched (``in``). The one
    sanctioned deferred import of the project: a CLI command's module binds its heavy names so,
    and its options are built and checked before torch loads (docs/architecture.md).
    tests/test_architecture.py reads each ``later("...")`` as an import edge of its module.

    An ``except`` clause needs the class itself: ``except stop.RunInterrupted`` with
    ``stop = later("bench.run.stop")`` (the clause is evaluated only when something was raised)."""

    __slots__ = ("target",)

    def __init__(self, target: str):
        self.target = target

    def load(self):
        """The module or the name, imported now (once: Python keeps the module)."""
        module, _, name = self.target.partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, name) if name else loaded

    def __call__(self, *args, **kwargs):
        return self.load()(*args, **kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "target":  # copy, pickle, inspect probe these: no import
            raise AttributeError(name)
        return getattr(self.load(), name)

    def __contains__(self, item) -> bool:
        return item in self.load()

    def __iter__(self):
        return iter(self.load())

    def __len__(self) -> int:
        return len(self.load())

    def __getitem__(self, key):
        return self.load()[key]

    def __repr__(self) -> str:
        return f"later({self.target!r})"


def __dir__() -> list[str]:
    return sorted(__all__)
