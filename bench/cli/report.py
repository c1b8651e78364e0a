"""`bench report` and `bench compare`: the report on run folders, and their paired tests.
Their options import no torch (`--help` and click's refusals answer at once): what reads the
runs and writes the report is bound with ``later`` and imported when the command runs."""
from __future__ import annotations

import logging

import click

from bench import later
from bench.cli import echo
from bench.escape import spreadsheet_frame

# the reading side (pandas, torch for the generators and metrics), imported when a command runs
resolve_device = later("bench.config.machine:resolve_device")
compare = later("bench.report.compare")
ReportSettings, build_report = later("bench.report.build:ReportSettings"), later("bench.report.build:build_report")
direction = later("bench.report.summary:direction")
load_run, newest_run = later("bench.rundir.read:load_run"), later("bench.rundir.read:newest_run")
write_csv = later("bench.rundir.write:write_csv")
METRICS, derived_from = later("bench.score.metrics:METRICS"), later("bench.score.metrics:derived_from")

log = logging.getLogger("colorbench")


@click.command()
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
    try:
        dirs = list(run_dirs) or [newest_run()]
        settings = ReportSettings(samples=samples, display_size=display_size, device=str(resolve_device(device)))
        result = build_report(dirs, out, settings, overwrite=overwrite)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for caveat in result.caveats:
        log.info("caveat: %s", caveat.replace("**", ""))
    echo(f"Report: {result.path} ({len(result.figures)} figures, summary.csv beside it)")


@click.command("compare")
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
    try:
        run = load_run(run_dir or newest_run())  # first: the run's plugins register its own metrics
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise click.BadParameter(f"unknown metric {', '.join(unknown)}; choose from {', '.join(METRICS)}",
                                 param_hint="--metric")
    try:
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
            ranks = derived_from(metric)
            why = ("no per-image values in this run" if direction(metric) != "descriptive" else
                   "descriptive, never ranked" + (f": compare {', '.join(ranks)}" if ranks else ""))
            echo(f"{metric}: not compared ({why})\n")
            continue
        echo(compare.terminal_table(pairs, metric) + "\n")
    if csv_path:

        write_csv(csv_path, spreadsheet_frame(pairs))
        echo(f"Table: {csv_path}")
