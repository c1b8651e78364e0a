"""The report's figures: one entry each in ``FIGURES``, in the order report.md shows them.

An entry is its key (the link's text, ``Report.figures``' key), its file (``fig_*.png`` in
the report folder), its caption (text, or a function of the report's data) and its draw
function: ``draw(data, path)`` writes the PNG (through ``bench.report.plots``, atomically)
and returns notes for the caveats, or raises ``LeftOut`` to leave the figure out (with the
reason as a caveat, or silently). ``register_figure`` adds one, from a plugin too; nothing
else lists figures: the report links those drawn, and removes a file an earlier report drew
and this one could not.

Every figure is drawn from what the run stored, as the tables are: metrics.csv (through
``bench.report.summary``), the per-image scores (``bench.score.per_image``), the cells'
logs and curves, the paired tests (``bench.report.paired``), each under the run's scoring
protocol and with the outside colorizers' rows. Only the sample grid, which shows pictures,
reruns the trained generators on a few val photos.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from colorbench_datasets.tensors import resize_and_crop
from PIL import Image

from bench.colorize import colorize_images, gray_image
from bench.escape import code
from bench.report import plots
from bench.report.curves import val_curves
from bench.report.paired import Analysis, headline
from bench.report.photos import load_val_split, val_sources
from bench.report.summary import RANKED, arrow, decimals, direction, model_cells, seed_values, table_rows
from bench.rundir.layout import BASELINES, GRAY, TRUTH
from bench.rundir.read import Run, read_train_log
from bench.score.metrics import METRICS
from bench.score.per_image import read_per_image
from bench.score.protocol import scoring_protocol_of
from bench.score.scorer import load_generator


@dataclass
class ReportSettings:
    samples: int = 6          # val photos in the sample grid
    display_size: int = 256   # px per photo in the sample grid
    device: str = "cpu"       # where the sample grid reruns the generators
    batch_size: int = 64      # kept for callers; no figure reruns generators over the val split now


@dataclass
class ReportData:
    """What every figure (and report.md) is drawn from: the runs, their summary (metrics.csv's
    numbers, ``bench.report.summary.summarize``) and paired tests, computed once."""

    runs: list[Run]
    summary: pd.DataFrame
    analysis: Analysis | None
    settings: ReportSettings = field(default_factory=ReportSettings)

    @cached_property
    def order(self) -> list[str]:
        """The figures' rows: gray and the models (trained and outside) in table order."""
        return [r.label for r in table_rows(self.runs) if r.combination != TRUTH]

    @cached_property
    def references(self) -> list[str]:
        """The rows of the val photos themselves (one per photo set)."""
        return [r.label for r in table_rows(self.runs) if r.combination == TRUTH]

    @cached_property
    def palette(self) -> dict[str, tuple]:
        """One colour per row, the same in every figure."""
        return plots.make_palette(self.order) | {label: plots.TRUTH_COLOR for label in self.references}

    @cached_property
    def digits(self) -> dict[str, int]:
        """Decimals per metric, as the table prints them."""
        s = self.summary
        return {m: decimals(s.loc[s.metric == m, "mean"].tolist()) for m in s.metric.unique()}

    @cached_property
    def values(self) -> pd.DataFrame:
        """Every seed's value of every row (``seed_values``)."""
        return seed_values(self.runs, self.summary)

    @cached_property
    def scored(self) -> tuple[list[str], dict[str, str]]:
        """The metrics the scores figure plots, and why each other one is left out of it."""
        return scored_metrics(self.summary)

    @cached_property
    def curves(self) -> pd.DataFrame:
        """The val scores along training (each cell's curve.csv)."""
        return val_curves(self.runs)

    @cached_property
    def curve_metrics(self) -> list[str]:
        """The metrics of the curve figure: those of the scores figure that have curves."""
        return [m for m in self.scored[0] if m in set(self.curves.metric)]


class LeftOut(Exception):
    """Raised by a figure's draw function: no figure this time; the message, if any, is
    said in the report's caveats."""


@dataclass(frozen=True)
class ReportFigure:
    key: str
    file: str
    caption: str | Callable[[ReportData], str]
    draw: Callable[[ReportData, Path], list[str]]
    where: str = "figures"  # the report's "Figures" section; "differences": "Which differences are real?"

    def caption_for(self, data: ReportData) -> str:
        return self.caption(data) if callable(self.caption) else self.caption


FIGURES: list[ReportFigure] = []


def register_figure(figure: ReportFigure, before: str | None = None) -> ReportFigure:
    """Add ``figure`` to the report (last, or before the figure keyed ``before``). Keys and
    files are unique, and a file is a ``fig_*.png``: what ``bench run --overwrite`` discards."""
    if any(f.key == figure.key or f.file == figure.file for f in FIGURES):
        raise ValueError(f"a report figure is already registered as {figure.key!r} or {figure.file!r}")
    if not (figure.file.startswith("fig_") and figure.file.endswith(".png")) or "/" in figure.file:
        raise ValueError(f"a report figure's file is named fig_<name>.png, not {figure.file!r}")
    if figure.where not in ("figures", "differences"):
        raise ValueError(f"a report figure goes in 'figures' or 'differences', not {figure.where!r}")
    at = next((i for i, f in enumerate(FIGURES) if f.key == before), len(FIGURES)) if before else len(FIGURES)
    FIGURES.insert(at, figure)
    return figure


def figure(key: str, file: str, caption: str | Callable[[ReportData], str], where: str = "figures"):
    """``register_figure`` as a decorator of the draw function."""
    def add(draw: Callable[[ReportData, Path], list[str]]):
        register_figure(ReportFigure(key, file, caption, draw, where))
        return draw
    return add


# ---------------------------------------------------------------- the scores


def scored_metrics(summary: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The metrics the scores figure plots as gains over gray (ranked ones with a value),
    and why each other metric is left out of it."""
    plotted, left_out = [], {}
    for metric, group in summary.groupby("metric", sort=False):
        d = group["direction"].iloc[0]
        models = group[~group.combination.isin(BASELINES)]
        if d == "descriptive":
            left_out[metric] = "descriptive, read against the ground truth (see the colourfulness figure)"
        elif d not in RANKED:
            left_out[metric] = "direction unknown to this version"
        elif models["mean"].isna().all():
            left_out[metric] = "no values (see the caveats)"
        else:
            plotted.append(metric)
    return plotted, left_out


def _scores_caption(data: ReportData) -> str:
    left_out = data.scored[1]
    return ("Each combination's val score as a gain over the gray baseline, per metric, in the metric's own units "
            "(right of zero = better than the input itself; the baseline's value is under each panel)."
            + (" Not plotted: " + "; ".join(f"{code(m)} ({why})" for m, why in left_out.items()) + "." if left_out else ""))


@figure("scores", "fig_scores.png", _scores_caption)
def draw_scores(data: ReportData, path: Path) -> list[str]:
    values = data.values
    descriptions = {m: METRICS[m].description for m in data.summary.metric.unique() if m in METRICS}
    plots.bar_figure(values[values.row.isin(data.order) & values.metric.isin(data.scored[0])], data.order,
                     data.palette, path, descriptions, data.digits)
    return []


# ---------------------------------------------------------------- training


def training_logs(runs: list[Run]) -> tuple[dict, int | None]:
    """``{(row label, seed): train_log}`` for every cell with a log, and the steps per epoch
    (if every run has the same)."""
    logs, epoch_steps = {}, set()
    for row, seed, folder in model_cells(runs):
        if folder.train_log.is_file():
            frame = read_train_log(folder.train_log)  # None, with a warning naming it, if damaged
            if frame is not None and len(frame):
                logs[(row.label, seed)] = frame
                epoch_steps.add(int((frame["epoch"] == frame["epoch"].iloc[0]).sum()))
    return logs, (epoch_steps.pop() if len(epoch_steps) == 1 else None)


@figure("training", "fig_training.png", "Training losses per step, smoothed; each term unweighted as logged, "
        "`total` is the weighted sum the generator minimised.")
def draw_training(data: ReportData, path: Path) -> list[str]:
    logs, epoch_steps = training_logs(data.runs)
    if not logs:  # a folder of outside colorizers alone trains nothing
        raise LeftOut("training curves skipped: no cell has a train_log.csv" if any(r.combinations for r in data.runs) else "")
    plots.curves_figure(plots.curve_frame(logs), data.order, data.palette, path, epoch_steps)
    return []


@figure("curves", "fig_curves.png", "Each ranked metric on the val photos along training, one line per combination "
        "(mean over seeds, band: their range; the last point is the final score of the table), gray's value dotted. "
        "Each cell's numbers: its `curve.csv`.")
def draw_curves(data: ReportData, path: Path) -> list[str]:
    if not len(data.curves):
        raise LeftOut()
    grays = data.summary[data.summary.combination == GRAY]  # one gray row per metric: runs on the same val photos
    gray = dict(zip(grays.metric, grays["mean"])) if not grays.metric.duplicated().any() else {}
    plots.val_curves_figure(data.curves, data.curve_metrics, data.order, data.palette, path, gray)
    return []


# ---------------------------------------------------------------- colourfulness


def colorfulness_values(runs: list[Run], metric: str = "cf") -> pd.DataFrame:
    """What the colourfulness figure plots: every per-image ``cf`` the runs stored, under its
    table row (row, value): each trained combination (its seeds pooled), each outside
    colorizer and the val photos themselves, scored under each run's protocol, as
    metrics.csv's numbers are; gray (no colour) is left out."""
    stored = {run.name: read_per_image(run).frame for run in runs}
    parts = []
    for row in table_rows(runs):
        if row.combination == GRAY:
            continue
        frame = stored[row.run]
        values = frame.loc[(frame.combination == row.combination) & (frame.metric == metric), "value"]
        if len(values):
            parts.append(pd.DataFrame({"row": row.label, "value": values.to_numpy(dtype=float)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"row": [], "value": []})


def plotted_means(values: pd.DataFrame) -> dict[str, float]:
    """Each row's mean, marked and written on the figure: over every photo and seed, so the
    mean of the seeds' means, the table's number."""
    return {row: float(v) for row, v in values.groupby("row", sort=False)["value"].mean().items()}


def _colorfulness_caption(data: ReportData) -> str:
    outside = any(r.externals for r in data.runs)
    return ("Per-image colourfulness (`cf`, as scored) of each "
            + ("combination's and outside colorizer's" if outside else "combination's")
            + " val predictions, every seed pooled, against the photos themselves (dotted: quartiles; ◆ and its "
            "number: the row's mean, the table's value; dashed line: the photos' median). Washed-out, sepia "
            "predictions sit left of it.")


@figure("colorfulness", "fig_colorfulness.png", _colorfulness_caption)
def draw_colorfulness(data: ReportData, path: Path) -> list[str]:
    values = colorfulness_values(data.runs)
    rows = [r for r in [*data.order, *data.references] if r in set(values.row)]  # gray has none
    if not any(r not in data.references for r in rows):
        raise LeftOut("the colourfulness figure is left out: no per-image `cf` scores were stored (runs made before "
                      "Colorbench kept them)" if len(data.summary[data.summary.metric == "cf"]) else "")
    s = data.summary
    scored = s[(s.metric == "cf") & s["mean"].notna() & (s.combination != GRAY)]
    notes = [f"{code(label)} has no per-image `cf` scores: left out of the colourfulness figure"
             for label in dict.fromkeys(scored.row) if label not in rows]
    formulas = {scoring_protocol_of(r.config).cf_formula for r in data.runs}
    plots.colorfulness_figure(values, plotted_means(values), rows, [r for r in data.references if r in rows],
                              data.palette, path, data.digits.get("cf", 2),
                              f"{formulas.pop()} rg/yb formula" if len(formulas) == 1 else "")
    return notes


# ---------------------------------------------------------------- the sample grid


def pick_samples(names: list[str], count: int) -> list[str]:
    """Fixed val photos, evenly spread over the sorted names so every source of a mixed val
    set shows up; the same photos in every report of the same val set."""
    names = sorted(names)
    if count >= len(names):
        return names
    idx = np.linspace(0, len(names) - 1, count).round().astype(int)
    return [names[i] for i in dict.fromkeys(idx)]


def _cell_state(run: Run, combination: str) -> str:
    states = []
    for seed in run.seeds:
        record = run.cell_record(combination, seed)
        states.append(record.get("status", "unfinished") if record is not None else "not trained yet")
    return ", ".join(dict.fromkeys(states))


def _samples_caption(data: ReportData) -> str:
    sizes = ", ".join(sorted({str(r.options.get("size")) for r in data.runs}))
    return (f"Fixed val photos: grayscale input | each combination | ground truth. Each model ran at its training "
            f"size ({sizes} px); its colour was upsampled onto the photo's own {data.settings.display_size}-px "
            "lightness, as `bench colorize` does.")


@figure("samples", "fig_samples.png", _samples_caption)
def draw_samples(data: ReportData, path: Path) -> list[str]:
    """The one figure that reruns generators: a few of the first run's val photos through
    each trained combination (its first seed with a generator)."""
    first, settings = data.runs[0], data.settings
    try:
        split = load_val_split(first)  # checked against the photos the run scored
        items = dict(val_sources(first))
    except (OSError, ValueError) as exc:
        raise LeftOut(f"the sample figure is left out: the val photos could not be read ({exc})") from None
    chosen = pick_samples(split.names, settings.samples)
    s = settings.display_size
    originals = [Image.fromarray(np.asarray(resize_and_crop(items[name](), s, s))) for name in chosen]
    columns = [("grayscale input", [np.asarray(gray_image(im)) for im in originals])]
    notes = []
    by_run = {r.name: r for r in data.runs}
    rows = [r for r in table_rows(data.runs) if r.combination not in BASELINES]
    outside = [code(r.label) for r in rows if r.combination in by_run[r.run].external_names]
    for row in rows:
        run = by_run[row.run]
        if row.combination in run.external_names:
            continue
        shown = damaged = False
        for seed in run.seeds:
            generator = run.folder.cell(row.combination, seed).generator
            if shown or not generator.is_file():
                continue
            try:
                G = load_generator(generator, settings.device)
            except ValueError as exc:  # a damaged generator.pt: named, and left out
                notes.append(f"{code(row.label)} seed {seed} left out of the image figures (the sample grid): {exc}")
                damaged = True
                continue
            size = int(G.meta.get("size", run.options["size"]))
            title = row.label + (f" (seed {seed})" if len(run.seeds) > 1 else "")
            columns.append((title, [np.asarray(im) for im in colorize_images(G, originals, size)]))
            shown = True
        if not shown and not damaged:
            notes.append(f"{code(row.label)} has no trained generator ({_cell_state(run, row.combination)}): "
                         "left out of the image figures (the sample grid)")
    columns.append(("ground truth", [np.asarray(im) for im in originals]))
    if outside:
        notes.append(f"outside colorizers ({', '.join(outside)}) are not in the sample grid, which reruns trained "
                     "generators: the colourfulness figure and gallery.html show them")
    plots.sample_grid(columns, chosen, path, settings.display_size)
    return notes


# ---------------------------------------------------------------- the paired tests


def pairwise_panels(analysis: Analysis | None, summary: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame, list[str], int]]:
    """The matrix figure's panels: per run and headline metric, (title, its pairs, the rows
    in table order with gray last, decimals as the table prints them)."""
    if analysis is None:
        return []
    panels = []
    for s in analysis.scores:
        own = analysis.pairwise[analysis.pairwise.run == s.run.name]
        # the models in table order, gray last: its column reads "against the input itself"
        order = [s.labels.get(c, c) for c in [*s.combinations[1:], s.combinations[0]]] if s.combinations[:1] == [GRAY] \
            else [s.labels.get(c, c) for c in s.combinations]
        for metric in headline(own):
            rows = own[own.metric == metric]
            digits = decimals(summary.loc[summary.metric == metric, "mean"].tolist()) \
                if summary is not None and (summary.metric == metric).any() else decimals(rows["diff"].abs().tolist())
            words = {"higher": "higher is better", "lower": "lower is better"}[direction(metric)]
            title = f"{metric} {arrow(metric)} ({words})" + (f" · {s.run.name}" if len(analysis.scores) > 1 else "")
            panels.append((title, rows, order, digits))
    return panels


def _pairwise_caption(data: ReportData) -> str:
    seeds = int(data.analysis.pairwise["seeds"].max())
    return ("Δ of the row's combination over the column's, in each metric's direction (blue: the row is better). "
            "Coloured and starred: a real difference (p < 0.05 after Holm, interval excluding 0)"
            + ("; pale and hatched: these trained models only (photo test alone)" if seeds > 1 else "")
            + "; grey: not told apart from noise.")


@figure("pairwise", "fig_pairwise.png", _pairwise_caption, where="differences")
def draw_pairwise(data: ReportData, path: Path) -> list[str]:
    panels = pairwise_panels(data.analysis, data.summary)
    if not panels:
        raise LeftOut()
    pairs = data.analysis.pairwise
    plots.matrix_figure(panels, path, int(pairs["seeds"].max()), int(pairs["photos"].max()))
    return []
