"""The ``bench`` command: a thin click layer over the library functions."""
from __future__ import annotations

import logging
import sys
import warnings

import click

from bench.config import DEFAULT_LOSSES, PRESETS, RunConfig

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


def _preset_help() -> str:
    return "; ".join(
        f"{name}: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in values.items())
        for name, values in PRESETS.items()
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log more detail (skipped files, timings).")
def main(verbose: bool) -> None:
    """Colorbench: which loss colorizes black-and-white photos best?

    Trains the same U-Net on L -> ab once per loss combination under identical seeds and
    data, scores every model, and writes tables and a report under results/.
    """
    _setup_logging(verbose)


D = RunConfig()


@main.command()
@click.option("--losses", default=None,
              help="Comma-separated combinations; each a '+'-sum of optionally weighted terms, "
                   "e.g. 'mse,l1,100*l1+gan,l1+0.1*perceptual'. See `bench losses`.  "
                   f"[default: preset's; quick: {DEFAULT_LOSSES}]")
@click.option("--data", type=click.Path(file_okay=True), default=None,
              help="Folder of photos (recursive). Uses its train/ and val/ (or test/) subfolders "
                   "if present, else a 10% file-name-hash val split.  [default: built-in sample set]")
@click.option("--val-data", type=click.Path(), default=None, help="Folder of val photos (then --data is all train).")
@click.option("--dataset", default=None,
              help="A named dataset instead of --data: sample, coco-sample (the tutorial's 8000/2000 "
                   "COCO split), cifar10, stl10, places365. Downloaded once into --data-root.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Cache folder for named datasets.  [default: $COLORBENCH_DATA, else colorbench/data "
                   "in the user cache folder, e.g. ~/.cache/colorbench/data]")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="quick", show_default=True,
              help=f"Defaults for the options below. {_preset_help()}.")
@click.option("--generator", default=None, help=f"Generator network: unet or resunet.  [default: preset's, {D.generator}]")
@click.option("--discriminator", default=D.discriminator, show_default=True, help="Discriminator for GAN terms.")
@click.option("--disc-width", type=int, default=None,
              help="Discriminator base channels (pix2pix's ndf).  [default: --width, as pix2pix's ndf = ngf]")
@click.option("--size", type=int, default=None, help="Training/val crop size in px (a multiple of 32).  [default: preset's]")
@click.option("--width", type=int, default=None, help="Generator base channels.  [default: preset's]")
@click.option("--steps", type=int, default=None,
              help="Optimizer steps per cell (replaces --epochs).  [default: preset's; quick: 300]")
@click.option("--epochs", type=int, default=None,
              help="Passes over the train photos per cell (replaces --steps).  [default: preset's; paper: 100]")
@click.option("--batch-size", type=int, default=None, help="Batch size.  [default: preset's]")
@click.option("--seeds", callback=_seeds, default="0", show_default=True, help="Comma-separated seeds; each is a cell per combination.")
@click.option("--lr", type=float, default=D.lr, show_default=True, help="Adam learning rate for G and D.")
@click.option("--gan-mode", type=click.Choice(["vanilla", "lsgan", "hinge", "wgangp"]), default=D.gan_mode,
              show_default=True, help="GAN objective (wgangp: Wasserstein loss with gradient penalty).")
@click.option("--perceptual-layers", default=D.perceptual_layers, show_default=True,
              help="VGG16 layers the perceptual loss compares, each optionally LAYER:WEIGHT, "
                   "e.g. 'relu2_2' or 'relu1_2:0.5,relu2_2,relu3_3' (relu1_1 ... relu5_3).")
@click.option("--device", default=D.device, show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=D.precision, show_default=True,
              help="auto: bf16 where the hardware runs it natively, else fp32.")
@click.option("--out", type=click.Path(), default=None,
              help="Run folder; rerunning into it skips finished cells.  [default: results/run-TIMESTAMP]")
@click.option("--overwrite", is_flag=True, help="Discard an earlier run in --out that used other options.")
@click.option("--strict-weights", is_flag=True, help="Fail before training if pretrained weights are missing, instead of falling back.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the generator: faster steps on GPU after a compile pause; off by default "
                   "because on CPU the compile time outweighs short runs.")
@click.option("--deterministic", is_flag=True,
              help="Deterministic GPU kernels (slower); CPU runs are repeatable without it.")
@click.option("--checkpoint-seconds", type=click.FloatRange(min=0), default=None,
              help="Save a cell's training state at least this often, so a kill loses no more; also at "
                   "the end of a pass over the photos once a fifth of it has gone by.  [default: 300]")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(quiet, overwrite, **options):
    """Train and score every loss combination x seed.

    Rerunning the same command resumes: finished cells are kept and an unfinished one
    continues from its last checkpoint. Ctrl-C saves and stops.
    """
    from bench.config import make_config
    from bench.runner import RunInterrupted, run_benchmark

    preset = options.pop("preset")
    options["compile"] = options.pop("compile_")
    try:
        cfg = make_config(preset, **options)
        out = run_benchmark(cfg, progress=not quiet, overwrite=overwrite)
    except RunInterrupted as exc:
        click.echo(f"\nStopped; nothing is lost. Resume with:\n  {_resume_command(exc.out)}", err=True)
        sys.exit(130)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
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
    from bench.results import read_metrics
    from bench.summary import arrow, decimals

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
    from bench.config import resolve_device
    from bench.report import ReportSettings, build_report
    from bench.runs import newest_run

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
    from bench.config import resolve_device
    from bench.evaluate import load_generator
    from bench.runs import generator_path, load_run, resolve_combination

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
    from models.pretrained import WeightsImportError, import_weights as install

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
    from bench import compare
    from bench.metrics import METRICS
    from bench.runs import load_run, newest_run

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
        from bench.results import write_csv

        write_csv(csv_path, pairs)
        click.echo(f"Table: {csv_path}")


if __name__ == "__main__":
    main()
