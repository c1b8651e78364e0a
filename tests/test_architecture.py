"""The wiring the architecture promises (docs/architecture.md): reading a run never loads the
training stack, the model/loss/data packages never reach up into the harness, and no
function in bench/ outgrows a screen."""
from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_after(code: str) -> set[str]:
    """The modules loaded by running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_report_compare_colorize_and_status_never_import_the_training_stack():
    # what `bench report`, `bench compare`, `bench colorize` and `bench status` import (bench/cli.py's commands)
    loaded = _imported_after("import bench.cli, bench.config.options, bench.report.build, bench.report.compare, bench.colorize, "
                             "bench.rundir.read, bench.score.scorer, bench.rundir.layout, bench.run.status")
    assert "bench.run.runner" not in loaded and "bench.train.loop" not in loaded
    assert "bench.report.build" in loaded  # the probe really imported the reading side


@pytest.mark.parametrize("package", ["models", "losses", "colorbench_datasets"])
def test_models_losses_and_datasets_never_import_bench(package):
    module = __import__(package)
    names = [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    loaded = _imported_after("; ".join(f"import {n}" for n in [package, *names]))
    assert set(names) <= loaded
    assert not {m for m in loaded if m == "bench" or m.startswith("bench.")}


def test_no_function_in_bench_is_longer_than_a_screen():
    long = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 65:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
