"""`bench run`: train and score every loss combination x seed; its options come from the
config dataclasses' field metadata (bench/config/options.py).

This module imports no torch: `bench run --help`, click's refusals and the options' own
rules (``check_rules``) answer at once. What runs the benchmark is bound with ``later`` and
imported once the options are checked."""
from __future__ import annotations

import shlex
import sys
import types
import typing

import click

from bench import later
from bench.cli import echo
from bench.config.options import (
    LAUNCH_FIELDS,
    PRESET_FIELDS,
    PRESETS,
    RUN_FIELDS,
    LaunchConfig,
    RunConfig,
    make_config,
    parse_seeds,
)
from bench.config.rules import check_rules
from bench.rundir.lock import invoked_as

# the training stack and the tables, imported when a run starts
arrow, decimals = later("bench.report.summary:arrow"), later("bench.report.summary:decimals")
run_benchmark = later("bench.run.runner:run_benchmark")
stop = later("bench.run.stop")
read_metrics = later("bench.rundir.read:read_metrics")


def _seeds(ctx, param, value):
    try:
        return None if value is None else parse_seeds(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _default_text(name: str, f) -> str:
    """How ``bench run --help`` shows a field's default: the preset's (with each preset's
    value, or the one value they share), the metadata's words, or the plain value."""
    if name in PRESET_FIELDS:
        values = {preset: values[name] for preset, values in PRESETS.items() if name in values}
        if len(values) == len(PRESETS) and len(set(map(repr, values.values()))) == 1:
            return f"preset's, {next(iter(values.values()))}"
        return "; ".join(["preset's", *(f"{preset}: {value}" for preset, value in values.items())])
    if f.metadata["default_text"]:
        return f.metadata["default_text"]
    if f.default is None or isinstance(f.default, bool):
        return ""
    if isinstance(f.default, tuple):
        return ",".join(map(str, f.default))
    return f"{f.default:g}" if isinstance(f.default, float) else str(f.default)


def _click_type(f, kind):
    meta = f.metadata
    if meta["choices"]:
        return click.Choice(list(meta["choices"]))
    if meta["path"]:
        return click.Path(file_okay=meta["path"] != "folder")
    if kind is float:
        return click.FloatRange(min=meta["min"], min_open=meta["min_open"]) if meta["min"] is not None else click.FLOAT
    if kind is int:
        return click.IntRange(min=meta["min"]) if meta["min"] is not None else click.INT
    return click.STRING


def _field_options(cls, fields: dict) -> list[click.Option]:
    """One click option per field of ``cls`` that is not internal, built from the field's
    metadata (bench/config/options.py): flag, type, default and help. Options a preset sets default
    to None here, so the preset's value fills them (make_config)."""
    hints = typing.get_type_hints(cls)
    options = []
    for name, f in fields.items():
        meta = f.metadata
        if meta["internal"]:
            continue
        kind = hints[name]
        if isinstance(kind, types.UnionType):  # `int | None`: an int option that may be left unset
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        flag = meta["flag"] or "--" + name.replace("_", "-")
        shown = _default_text(name, f)
        help_text = meta["help"] + (f"  [default: {shown}]" if shown else "")
        if kind is bool:
            options.append(click.Option([flag, name], is_flag=True, default=f.default, help=help_text))
        elif meta["multiple"]:  # repeatable: --slurm-option A=1 --slurm-option B=2
            options.append(click.Option([flag, name], multiple=True, help=help_text))
        elif typing.get_origin(kind) is tuple:  # comma-separated integers (--seeds)
            default = None if name in PRESET_FIELDS else ",".join(map(str, f.default))
            options.append(click.Option([flag, name], callback=_seeds, default=default, help=help_text))
        else:
            default = None if name in PRESET_FIELDS else f.default
            options.append(click.Option([flag, name], type=_click_type(f, kind), default=default, help=help_text))
    return options


def run_options(fn):
    """``bench run``'s options: what a run computes (``RunConfig``), then how it runs
    (``LaunchConfig``)."""
    options = _field_options(RunConfig, RUN_FIELDS) + _field_options(LaunchConfig, LAUNCH_FIELDS)
    fn.__click_params__ = [*getattr(fn, "__click_params__", []), *reversed(options)]
    return fn


@click.command()
@run_options
@click.option("--overwrite", is_flag=True, help="Discard an earlier run in --out that used other options.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(quiet, overwrite, **options):
    """Train and score every loss combination x seed.

    Rerunning the same command resumes: finished cells are kept and an unfinished one
    continues from its last checkpoint. Ctrl-C (or SIGTERM, SIGHUP) saves and stops.
    """
    preset = options.pop("preset")
    launch = LaunchConfig(**{name: options.pop(name) for name in LAUNCH_FIELDS})
    try:
        cfg = make_config(preset, **options)
        check_rules(cfg, launch)  # no torch yet: a refused option answers at once
        out = run_benchmark(cfg, progress=not quiet, overwrite=overwrite, launch=launch)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except stop.RunInterrupted as exc:  # (evaluated once something was raised: the run had started)
        note = f" ({exc.note})" if exc.note else ""
        echo(f"\nStopped by {stop.signal_words(exc.signum)}; nothing is lost{note}. Resume with:\n"
             f"  {_resume_command(exc.out)}", err=True)
        sys.exit(128 + (exc.signum or 2))
    if launch.no_wait:
        echo(f"Submitted. Follow the cells with `bench status {out}`; rerun this command to resubmit any "
             "that fail.")
        return
    _print_summary(out)


def _resume_command(out) -> str:
    """The command line that was run, with --out pinned to the run folder it wrote."""
    args = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args += ["--out", str(out)]
    return shlex.join([*invoked_as(), *[a for a in args if a != "--overwrite"]])


def _print_summary(out) -> None:
    """The run's table as the report prints it: mean over seeds, the report's digits per
    metric, "—" where a metric has no value."""
    frame = read_metrics(out)
    table = frame.pivot_table(index="combination", columns="metric", values="value", aggfunc="mean", sort=False, dropna=False)
    for metric in table.columns:
        digits = decimals(table[metric].tolist())
        table[metric] = [f"{v:.{digits}f}" if v == v else "—" for v in table[metric]]  # v == v: not NaN
    table.columns = [f"{m} {arrow(m)}".rstrip() for m in table.columns]
    table.index.name = None
    echo(f"\nResults in {out} (mean over seeds; `bench report` writes the report):")
    echo(table.to_string())
    missing = frame[frame["value"].isna() & frame["note"].str.startswith("missing")][["metric", "note"]].drop_duplicates()
    for metric, note in missing.itertuples(index=False):
        echo(f"{metric}: {note} (see `bench weights`)")
