"""The ``bench`` command: a thin click layer over the library functions."""
from __future__ import annotations

import logging
import sys
import types
import typing
import warnings

import click

from bench.config.options import (
    LAUNCH_FIELDS,
    PRESET_FIELDS,
    PRESETS,
    RUN_FIELDS,
    LaunchConfig,
    RunConfig,
)

log = logging.getLogger("colorbench")


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    warnings.formatwarning = lambda msg, cat, *a, **k: f"WARNING: {msg}\n"


def _seeds(ctx, param, value):
    if value is None:
        return None
    try:
        seeds = tuple(int(s) for s in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 0,1,2") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{value!r}: seeds must be distinct non-negative integers")
    return seeds


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log more detail (skipped files, timings).")
def main(verbose: bool) -> None:
    """Colorbench: which loss colorizes black-and-white photos best?

    Trains the same U-Net on L -> ab once per loss combination under identical seeds and
    data, scores every model, and writes tables and a report under results/.
    """
    _setup_logging(verbose)


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
        return click.FloatRange(min=meta["min"]) if meta["min"] is not None else click.FLOAT
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


@main.command()
@run_options
@click.option("--overwrite", is_flag=True, help="Discard an earlier run in --out that used other options.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(quiet, overwrite, **options):
    """Train and score every loss combination x seed.

    Rerunning the same command resumes: finished cells are kept and an unfinished one
    continues from its last checkpoint. Ctrl-C saves and stops.
    """
    from bench.config.options import make_config
    from bench.run.runner import run_benchmark
    from bench.run.stop import RunInterrupted

    preset = options.pop("preset")
    launch = LaunchConfig(**{name: options.pop(name) for name in LAUNCH_FIELDS})
    try:
        cfg = make_config(preset, **options)
        out = run_benchmark(cfg, progress=not quiet, overwrite=overwrite, launch=launch)
    except RunInterrupted as exc:
        click.echo(f"\nStopped; nothing is lost. Resume with:\n  {_resume_command(exc.out)}", err=True)
        sys.exit(130)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if launch.no_wait:
        click.echo(f"Submitted. Follow the cells with `bench status {out}`; rerun this command to resubmit any "
                   "that fail.")
        return
    _print_summary(out)


def _resume_command(out) -> str:
    """The command line that was run, with --out pinned to the run folder it wrote."""
    import shlex

    args = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args += ["--out", str(out)]
    return shlex.join(["bench", *[a for a in args if a != "--overwrite"]])


def _print_summary(out) -> None:
    """The run's table as the report prints it: mean over seeds, the report's digits per
    metric, "—" where a metric has no value."""
    from bench.report.summary import arrow, decimals
    from bench.rundir.read import read_metrics

    frame = read_metrics(out)
    table = frame.pivot_table(index="combination", columns="metric", values="value", aggfunc="mean", sort=False, dropna=False)
    for metric in table.columns:
        digits = decimals(table[metric].tolist())
        table[metric] = [f"{v:.{digits}f}" if v == v else "—" for v in table[metric]]  # v == v: not NaN
    table.columns = [f"{m} {arrow(m)}".rstrip() for m in table.columns]
    table.index.name = None
    click.echo(f"\nResults in {out} (mean over seeds; `bench report` writes the report):")
    click.echo(table.to_string())
    missing = frame[frame["value"].isna() & frame["note"].str.startswith("missing")][["metric", "note"]].drop_duplicates()
    for metric, note in missing.itertuples(index=False):
        click.echo(f"{metric}: {note} (see `bench weights`)")


@main.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.md, summary.csv and the figures.  [default: the first RUN_DIR]")
@click.option("--samples", type=click.IntRange(1, 24), default=6, show_default=True, help="Val photos in the sample grid.")
@click.option("--display-size", type=click.IntRange(32, 1024), default=256, show_default=True,
              help="Pixels per photo in the sample grid.")
@click.option("--device", default="auto", show_default=True, help="Where to rerun the generators: auto, cpu or cuda[:N].")
@click.option("--overwrite", is_flag=True, help="Write into --out even if it is another run's folder or holds a report on other runs.")
def report(run_dirs, out, samples, display_size, device, overwrite):
    """Write report.md (table, figures, reading) for RUN_DIR(s).  [default: newest run under results/]

    Several RUN_DIRs give one report comparing them, written into the first.
    """
    from bench.config.machine import resolve_device
    from bench.report.build import ReportSettings, build_report
    from bench.rundir.read import newest_run

    try:
        dirs = list(run_dirs) or [newest_run()]
        settings = ReportSettings(samples=samples, display_size=display_size, device=str(resolve_device(device)))
        result = build_report(dirs, out, settings, overwrite=overwrite)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for caveat in result.caveats:
        log.info("caveat: %s", caveat.replace("**", ""))
    click.echo(f"Report: {result.path} ({len(result.figures)} figures, summary.csv beside it)")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="A finished `bench run` folder.")
@click.option("--loss", required=True, help="Which combination's generator, by name or --losses spec (e.g. l1, 100*l1+gan).")
@click.option("--seed", type=int, default=None, help="Which seed's generator.  [default: the run's first seed]")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the colourised PNGs.")
@click.option("--overwrite", is_flag=True,
              help="Replace output PNGs that already exist in --out (input photos are never overwritten).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def colorize(inputs, run_dir, loss, seed, out, overwrite, device, quiet):
    """Colourise photos (files or folders, any size) with a trained generator.

    The model runs at its training size; its colour is upsampled onto each photo's own
    full-resolution lightness, so the output keeps the photo's size and detail.
    """
    from bench.colorize import colorize_paths, plan_jobs
    from bench.config.machine import resolve_device
    from bench.rundir.read import generator_path, load_run, resolve_combination
    from bench.score.scorer import load_generator

    try:
        run = load_run(run_dir)
        combination = resolve_combination(run, loss)
        seed = run.seeds[0] if seed is None else seed
        jobs = plan_jobs(inputs, out, overwrite)  # before loading anything: nothing to write over
        G = load_generator(generator_path(run, combination, seed), resolve_device(device))
        done, skipped = colorize_paths(G, int(G.meta["size"]), jobs, progress=not quiet)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(done)} photo(s) colourised by {combination} seed {seed} into {out}"
               + (f"; {len(skipped)} skipped (see warnings)" if skipped else ""))
    if not done:
        raise click.ClickException("no photo could be read; nothing written")


@main.command("status")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--lines", type=click.IntRange(0, 200), default=8, show_default=True,
              help="Log lines shown for each failed or stopped cell.")
def status(run_dir, lines):
    """Where every cell of RUN_DIR stands: done, diverged, running (where, which job),
    pending, failed or stopped (with its log's last lines).  [default: newest run under results/]"""
    from bench.run.status import cell_states, status_text
    from bench.rundir.layout import RunFolder
    from bench.rundir.read import newest_run, read_config

    try:
        folder = RunFolder(run_dir or newest_run())
        click.echo(status_text(folder, cell_states(folder, read_config(folder.config), lines)))
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command("losses")
def list_losses():
    """List the registered loss terms."""
    from losses import LOSSES

    width = max(map(len, LOSSES))
    for info in sorted(LOSSES.values(), key=lambda i: i.name):
        click.echo(f"{info.name:<{width}}  {info.description}")
        if info.reference:
            click.echo(f"{'':<{width}}  paper: {info.reference}")
        if info.defaults:
            click.echo(f"{'':<{width}}  defaults: {info.defaults}")


@main.group("weights", invoke_without_command=True)
@click.pass_context
def weights(ctx):
    """List the pretrained files Colorbench may need: where they are looked for, present or
    missing, and the URL to get each. `bench weights import FILE...` installs downloads."""
    if ctx.invoked_subcommand is None:
        _list_weights()


def _list_weights() -> None:
    from models import pretrained

    folder = pretrained.checkpoint_dir()
    click.echo(f"Looked for in {folder}")
    click.echo("  (torch hub's cache, shared with torchvision and pytorch-fid; set TORCH_HOME to move it)")
    if pretrained.offline():
        click.echo("  COLORBENCH_OFFLINE is set: missing files are not downloaded")
    rows = []
    for w in pretrained.known_weights().values():
        path = pretrained.cached_path(w)
        if path.is_file():  # hashed once against the name's SHA-256 prefix, then remembered
            size, status = f"{path.stat().st_size / 2**20:.0f} MB", pretrained.cache_status(w)
        else:
            size, status = (f"~{w.approx_mb} MB" if w.approx_mb else "?"), "MISSING"
        rows.append((w.key, w.filename, size, status, w.used_for, w.url))
    linear = pretrained.lpips_linear_path()
    rows.append(("lpips", linear.name, f"{linear.stat().st_size / 2**10:.0f} KB" if linear.is_file() else "?",
                 "present" if linear.is_file() else "MISSING", "LPIPS's linear layers",
                 f"ships with the lpips package: {linear}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo(("  " + "  ".join(v.ljust(n) for v, n in zip(r[:5], widths))).rstrip())
        click.echo(f"  {'':<{widths[0]}}  {r[5]}")
    if any(r[3] != "present" for r in rows):
        click.echo("Without internet: fetch the URLs on another machine, then `bench weights import FILE...`.")


@weights.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def import_weights(files):
    """Copy downloaded weights FILEs into the cache, after checking the SHA-256 prefix in
    each file's name (as torchvision and pytorch-fid name them)."""
    from models.pretrained import WeightsImportError
    from models.pretrained import import_weights as install

    refused = 0
    for f in files:
        try:
            entry, dest, copied = install(f)
        except WeightsImportError as exc:
            click.echo(f"Error: {exc}", err=True)
            refused += 1
            continue
        click.echo(f"{f}: {'imported as' if copied else 'already in place:'} {dest} ({entry.used_for})")
    if refused:
        raise click.ClickException(f"{refused} of {len(files)} file(s) refused; nothing was written for them")


@main.command("compare")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--metric", "metrics", multiple=True,
              help="Metric to compare on (repeatable).  [default: psnr, de00, delta_cf, and lpips when present]")
@click.option("--resamples", type=click.IntRange(100, 100_000), default=2000, show_default=True,
              help="Bootstrap resamples of the photos (and seeds).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also write the table as CSV.")
def compare_runs(run_dir, metrics, resamples, csv_path):
    """Which differences are real? Paired comparisons of RUN_DIR's combinations, photo by photo.

    For every pair (and each against gray): the mean paired difference in the metric's
    direction with its 95 % bootstrap interval, the Wilcoxon p-value over photos (and a
    t-test over seeds) after Holm's correction, and whether the difference is real.
    [default RUN_DIR: newest run under results/]
    """
    from bench.report import compare
    from bench.rundir.read import load_run, newest_run
    from bench.score.metrics import METRICS

    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise click.BadParameter(f"unknown metric {', '.join(unknown)}; choose from {', '.join(METRICS)}",
                                 param_hint="--metric")
    try:
        run = load_run(run_dir or newest_run())
        scores = compare.load_scores(run)
        if not scores.values:
            raise click.ClickException(f"{run.path} has no per-image scores (made before Colorbench kept them); "
                                       "rerun `bench run` into a new --out to compare photo by photo")
        available = compare.ranked_metrics(scores)
        wanted = list(metrics) or [m for m in compare.HEADLINE if m in available]
        pairs = compare.pairwise(scores, [m for m in wanted if m in available], n_boot=resamples)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for problem in scores.problems:
        log.info("note: %s", problem.replace("`", ""))
    for metric in wanted:
        if metric not in available:
            why = "descriptive, never ranked: compare delta_cf" if metric == "cf" else "no per-image values in this run"
            click.echo(f"{metric}: not compared ({why})\n")
            continue
        click.echo(compare.terminal_table(pairs, metric) + "\n")
    if csv_path:
        from bench.rundir.write import write_csv

        write_csv(csv_path, pairs)
        click.echo(f"Table: {csv_path}")


if __name__ == "__main__":
    main()
