"""`bench score`: score outside colorizers' output folders, into a new run folder or beside a
run's trained combinations. Its options (the protocol's from RunConfig's metadata) and their
checks import no torch; what scores is bound with ``later`` and imported once they passed."""
from __future__ import annotations

import click

from bench import later
from bench.cli import echo
from bench.cli.run import _field_options
from bench.config.options import (
    PROTOCOL_OVERRIDES,
    RUN_FIELDS,
    RunConfig,
    scoring_protocol,
)
from bench.rundir.layout import BASELINES

# the scoring stack and the tables, imported when the photos are scored
pd = later("pandas")
arrow, decimals = later("bench.report.summary:arrow"), later("bench.report.summary:decimals")
format_cell, summarize = later("bench.report.summary:format_cell"), later("bench.report.summary:summarize")
load_run = later("bench.rundir.read:load_run")
parse_pairs = later("bench.run.outside:parse_pairs")
score_folders, score_into_run = later("bench.run.outside:score_folders"), later("bench.run.outside:score_into_run")


def protocol_options(fn):
    """``--protocol`` and each protocol setting, as `bench run` has them (their help from RunConfig)."""
    options = _field_options(RunConfig, {k: RUN_FIELDS[k] for k in ("protocol", *PROTOCOL_OVERRIDES)})
    for option in options:
        if option.name == "protocol":
            option.default = None  # unset: a new folder's default (colorbench), or the run's own
    fn.__click_params__ = [*getattr(fn, "__click_params__", []), *reversed(options)]
    return fn


@click.command()
@click.argument("pairs", nargs=-1, metavar="NAME=FOLDER...")
@click.option("--truth", type=click.Path(file_okay=False),
              help="Folder of the ground-truth photos, scored like a run's val photos (a new run folder, --out).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False),
              help="A `bench run` folder: score beside its trained combinations, on its val photos and under its "
                   "protocol.")
@click.option("--out", type=click.Path(file_okay=False), help="With --truth: the new run folder.  "
              "[default: results/score-TIMESTAMP]")
@click.option("--size", type=click.IntRange(8, 4096), default=256, show_default=True,
              help="With --truth: the val crop in px that photos and predictions are prepared to.")
@click.option("--resize", type=click.Choice(["crop", "squash"]), default="crop", show_default=True,
              help="With --truth: shorter side to --size and centre crop, or squash to --size x --size (the "
                   "bicubic --val-geometry's; a paper's geometry replaces it).")
@click.option("--allow-missing", is_flag=True,
              help="Score the photos a folder has predictions for (and ignore files named like no photo), "
                   "instead of refusing; every table then says how many.")
@click.option("--gallery-photos", type=click.IntRange(min=0), default=None,
              help="With --truth: how many photos get gallery images.  [default: all]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--strict-weights", is_flag=True, help="Fail if LPIPS's or FID's weights are missing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@protocol_options
def score(pairs, truth, run_dir, out, size, resize, allow_missing, gallery_photos, device, strict_weights, quiet,
          **settings):
    """Score outside colorizers' photos: NAME=FOLDER per colorizer, files named like the photos.

    `bench score --truth photos/val ddcolor=out/ddcolor --out results/ext` makes a run folder
    (gray and ground-truth rows included) that `bench report`, `bench compare` and the gallery
    read; `bench score --run results/run-A ddcolor=out/ddcolor` adds rows to a run, tested
    photo by photo against its trained combinations.
    """
    name = settings.pop("protocol")
    try:
        # the options' own rules first, at once (no torch yet); then the pairs, then the work
        if (truth is None) == (run_dir is None):
            raise click.UsageError("give --truth FOLDER (a new run folder) or --run RUN_DIR (add to a run), not both")
        if run_dir is not None:
            for flag, given in (("--out", out), ("--gallery-photos", gallery_photos)):
                if given is not None:
                    raise click.UsageError(f"{flag} is for --truth; with --run the scores go into RUN_DIR")
        asked = scoring_protocol(name or "colorbench", **settings) if name or any(
            v is not None for v in settings.values()) else None
        folders = parse_pairs(pairs)
        if run_dir is not None:
            score_into_run(run_dir, folders, allow_missing=allow_missing, device=device, strict_weights=strict_weights,
                           protocol=asked, progress=not quiet)
            where = run_dir
        else:
            where = score_folders(truth, folders, out, size=size, resize=resize,
                                  protocol=asked or scoring_protocol("colorbench"),
                                  allow_missing=allow_missing, device=device, strict_weights=strict_weights,
                                  gallery_photos=gallery_photos, progress=not quiet)
    except click.UsageError:
        raise
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    print_scored(where)


def print_scored(where) -> None:
    """The run's rows as the report's table has them: every row of the run folder (gray, each
    trained combination, each outside colorizer, the photos), named as the report names them,
    ``(30/242 photos)`` and ``(not ranked)`` included, so no scored colorizer is left out and
    no row of other photos reads as comparable with the rest."""
    summary = summarize([load_run(where)])
    rows = list(dict.fromkeys(summary["row"]))
    metrics = list(dict.fromkeys(summary["metric"]))
    cells = summary.set_index(["row", "metric"])
    table = pd.DataFrame(index=rows, columns=[f"{m} {arrow(m)}".rstrip() for m in metrics], dtype=object)
    for m, column in zip(metrics, table.columns):
        digits = decimals(summary.loc[summary.metric == m, "mean"].tolist())
        for row in rows:
            r = cells.loc[(row, m)]
            table.loc[row, column] = format_cell(r["mean"], float("nan"), r["seeds"], r["seeds_total"], digits)
    ranked = summary.drop_duplicates("row").set_index("row")
    table.index = [row + ("" if ranked.loc[row, "ranked"] or ranked.loc[row, "combination"] in BASELINES
                          else " (not ranked)") for row in rows]
    echo(f"\nResults in {where} (mean over seeds; `bench report` writes the report, with why a row is not ranked):")
    echo(table.to_string())
    notes = summary[summary["note"].str.startswith("missing")][["metric", "note"]].drop_duplicates()
    for metric, note in notes.itertuples(index=False):
        echo(f"{metric}: {note} (see `bench weights`)")

