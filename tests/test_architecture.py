"""The wiring the architecture promises (docs/architecture.md): no import cycle among the
project's modules; reading a run never loads the training stack; the model/loss/data
packages never reach up into the harness; the CLI loads a command only when it runs; and
no function in bench/ outgrows a screen.

The import graph is built from the source (the AST, function bodies included), so a cycle
or a forbidden edge cannot hide in a function-local import; a deferred import through
``bench.later("module:name")`` (the one sanctioned kind) is an edge of the graph too."""
from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> import name (datasets/ installs as colorbench_datasets, see pyproject.toml)
PACKAGES = {"bench": "bench", "models": "models", "losses": "losses", "datasets": "colorbench_datasets"}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, name in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [name, *path.relative_to(ROOT / folder).with_suffix("").parts]
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _targets(module: str, path: Path, node) -> list[str]:
    """The project's modules an import statement loads (``from a import b`` may be either)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join(package + ([node.module] if node.module else []))
        names = [base, *(f"{base}.{a.name}" for a in node.names)]
    return [n for n in names if n in MODULES and n != module]


def _later_target(node) -> str | None:
    """The module a ``later("module:name")`` call defers (bench/__init__.py), else None."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return None
    func = node.func
    if (func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None) != "later":
        return None
    return node.args[0].value.partition(":")[0]


def _imports(local_only: bool = False) -> dict[str, set[str]]:
    """module -> the project's modules it imports anywhere in its source, deferred ones
    (``later``) included (or, with ``local_only``, import statements inside functions only)."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        scopes = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))] if local_only else [tree]
        graph[module] = {t for scope in scopes for node in ast.walk(scope)
                         if isinstance(node, (ast.Import, ast.ImportFrom)) for t in _targets(module, path, node)}
        if not local_only:
            graph[module] |= {t for node in ast.walk(tree) if (t := _later_target(node)) in MODULES and t != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_builder_sees_a_planted_cycle_and_a_function_local_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    local = ast.parse("def f():\n    from bench.run import runner\n")
    assert _targets("bench.report.build", ROOT / "bench/report/build.py", local.body[0].body[0]) == \
        ["bench.run", "bench.run.runner"]
    assert _imports()["bench.run.launch"] >= {"bench.run.job"}  # a real edge is seen
    deferred = ast.parse('x = later("bench.run.runner:run_benchmark")\ny = bench.later("pandas")\nz = f("bench.run")')
    assert [_later_target(n) for n in ast.walk(deferred) if isinstance(n, ast.Call)] == ["bench.run.runner", "pandas", None]
    assert _imports()["bench.cli.run"] >= {"bench.run.runner"}  # a deferred edge is seen


def test_no_import_cycle_among_the_projects_modules():
    assert _cycle(_imports()) is None


def test_every_deferred_import_names_what_exists():
    """A ``later("module:name")`` imports nothing until it is used, so a renamed module or
    name would only fail when its command runs: each is resolved here."""
    import importlib

    targets = {node.args[0].value for path in MODULES.values() for node in ast.walk(ast.parse(path.read_text()))
               if _later_target(node)}
    assert "bench.run.runner:run_benchmark" in targets
    for target in sorted(targets):
        module, _, name = target.partition(":")
        loaded = importlib.import_module(module)
        assert not name or hasattr(loaded, name), target


def test_no_function_local_import_of_the_projects_modules():
    """Every dependency shows at the top of its module; the CLI defers whole command modules
    through its lazy group (importlib), which is no import statement."""
    local = {m: sorted(t) for m, t in _imports(local_only=True).items() if t}
    assert not local, local


def test_reading_a_run_never_imports_training_and_packages_never_import_bench():
    graph = _imports()
    reading = {(m, t) for m, ts in graph.items() if m.startswith(("bench.report", "bench.score"))
               for t in ts if t.startswith(("bench.train", "bench.run.")) or t == "bench.run"}
    assert not reading, sorted(reading)
    upward = {(m, t) for m, ts in graph.items() if not m.startswith("bench") for t in ts if t.startswith("bench")}
    assert not upward, sorted(upward)


def test_bench_help_and_status_never_import_torch(tmp_path):
    """`bench --help` lists the commands without importing them; `bench status` runs on a
    login node while jobs train, and reads JSON only."""
    help_run = _imported_after("import sys; from click.testing import CliRunner; from bench.cli import main\n"
                               "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0 and 'status' in r.output")
    assert "torch" not in help_run and "bench.config.options" not in help_run
    status_run = _imported_after("from click.testing import CliRunner; from bench.cli import main\n"
                                 f"r = CliRunner().invoke(main, ['status', {str(tmp_path)!r}])\n"
                                 "assert 'not a `bench run` folder' in r.output, r.output")
    assert "bench.run.status" in status_run and "torch" not in status_run


def test_the_listed_command_lines_are_the_commands_own_help():
    import importlib

    from bench.cli import COMMANDS, main

    for name, (target, line) in COMMANDS.items():
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert command.name == name and main.get_command(None, name) is command
        words = " ".join(command.help.split())
        assert words.startswith(line.rstrip(".").removesuffix("..")), (name, line)


def _imported_after(code: str) -> set[str]:
    """The modules loaded by running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_report_compare_colorize_and_status_never_import_the_training_stack():
    # what `bench report`, `bench compare`, `bench colorize` and `bench status` import (bench/cli.py's commands)
    loaded = _imported_after("import bench.cli, bench.config.options, bench.report.build, bench.report.compare, bench.colorize, "
                             "bench.rundir.read, bench.score.scorer, bench.rundir.layout, bench.run.status")
    assert "bench.run.runner" not in loaded and "bench.train.loop" not in loaded
    assert "bench.report.build" in loaded  # the probe really imported the reading side


@pytest.mark.parametrize("package", ["models", "losses", "colorbench_datasets"])
@pytest.mark.slow
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
