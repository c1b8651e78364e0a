"""From tidy ``metrics.csv`` rows to the report's numbers: mean ± std per row and metric,
the best per metric, the distance to the gray baseline. Pure pandas, no plotting."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.escape import cell
from bench.rundir.layout import BASELINES, GRAY, TRUTH
from bench.rundir.read import Run
from bench.score.metrics import METRICS

# A row's kind: a trained combination, an outside colorizer (`bench score`), gray or the photos.
MODEL, OUTSIDE, BASELINE = "model", "outside colorizer", "baseline"


SUMMARY_COLUMNS = [
    "run", "row", "combination", "kind", "metric", "direction", "mean", "std", "seeds", "seeds_total",
    "best", "vs_gray", "ranked", "not_ranked_because", "photos", "photo_set", "note",
]


# A model is not ranked (never bold, never named a winner) while it has not learnt to
# colour: trained fewer steps than this, or with less than this fraction of the val
# photos' own colourfulness. Below either, its scores say how far it got, not which loss
# is better (a 3-step model "wins" cf-like metrics by staying gray).
MIN_RANKED_STEPS = 200


MIN_CF_FRACTION = 0.1


@dataclass(frozen=True)
class Row:
    """One table row: a combination (or the gray baseline) of one run. ``baseline`` is the
    run whose gray row this row is compared against."""

    run: str
    combination: str
    label: str
    baseline: str


RANKED = ("higher", "lower")


def direction(metric: str) -> str:
    """``higher`` or ``lower`` for a ranked metric, ``descriptive`` for one read against the
    ground truth (``cf``), ``""`` for a metric this version does not know."""
    m = METRICS.get(metric)
    if m is None:
        return ""
    return "descriptive" if m.higher_is_better is None else ("higher" if m.higher_is_better else "lower")


def arrow(metric: str) -> str:
    return {"higher": "↑", "lower": "↓"}.get(direction(metric), "")


def _val_key(run: Run):
    """Runs scored on the same val photos at the same size have the same gray scores."""
    digest = run.config.get("data", {}).get("val_files_sha256")
    return (digest, run.options.get("size")) if digest else (run.name,)


def table_rows(runs: list[Run]) -> list[Row]:
    """Rows in command-line order, each run's gray baseline before its combinations and the
    ground-truth reference rows (if the run scored the val photos themselves) after all.
    With several runs, rows carry the run name, and runs with the same val set share one
    gray and one ground-truth row."""
    rows, gray_of, truth_rows, truth_of = [], {}, [], {}
    for run in runs:
        suffix = f" · {run.name}" if len(runs) > 1 else ""
        key = _val_key(run)
        if key not in gray_of and GRAY in set(run.metrics["combination"]):
            gray_of[key] = run.name
            shared = sum(_val_key(r) == key for r in runs) > 1
            rows.append(Row(run.name, GRAY, GRAY if shared else GRAY + suffix, run.name))
        names = run.row_names or [c for c in run.metrics["combination"].unique() if c not in BASELINES]
        rows += [Row(run.name, c, c + partial_label(run, c) + suffix, gray_of.get(key, "")) for c in names]
        if key not in truth_of and TRUTH in set(run.metrics["combination"]):
            truth_of[key] = run.name
            shared = sum(_val_key(r) == key for r in runs) > 1
            truth_rows.append(Row(run.name, TRUTH, TRUTH if shared else TRUTH + suffix, ""))
    return rows + truth_rows  # the reference rows last, under the models


def partial_photos(run: Run, combination: str) -> tuple[int, int] | None:
    """``(scored, of)`` for an outside colorizer's row scored on some val photos alone
    (``--allow-missing``), else None: every other row is scored on all of its run's."""
    entry = next((e for e in run.externals if e["name"] == combination), None)
    if entry and isinstance(entry.get("images"), int) and isinstance(entry.get("of"), int) and entry["images"] < entry["of"]:
        return entry["images"], entry["of"]
    return None


def partial_label(run: Run, combination: str) -> str:
    """What every table adds to an outside colorizer's row scored on some val photos alone
    (``--allow-missing``): `` (200/242 photos)``."""
    part = partial_photos(run, combination)
    return f" ({part[0]}/{part[1]} photos)" if part else ""


def photo_sets(runs: list[Run]) -> dict[tuple[str, str], tuple[str, int | None]]:
    """``{(run, combination): (photo set, photos)}`` for every table row: which val photos its
    means are over. Rows of one photo set are comparable mean for mean; rows of different
    sets never are (the table bolds, the ranks and the reading's leads stay within a set).
    A set is named after the first run scored on it (runs on the same val photos at the same
    size share one); a row scored on some photos alone (``--allow-missing``) is a set of its own."""
    first: dict[tuple, str] = {}
    out = {}
    for row in table_rows(runs):
        run = next(r for r in runs if r.name == row.run)
        name = first.setdefault(_val_key(run), run.name)
        count = run.config.get("data", {}).get("val_images")
        part = partial_photos(run, row.combination)
        out[(row.run, row.combination)] = (
            (f"{name} · {row.combination} ({part[0]}/{part[1]})", part[0]) if part
            else (name, count if isinstance(count, int) else None))
    return out


def model_cells(runs: list[Run]):
    """Every cell behind the table's model rows, in the table's order: ``(row, seed, its CellFolder)``."""
    by_run = {r.name: r for r in runs}
    for row in table_rows(runs):
        if row.combination in BASELINES:
            continue
        run = by_run[row.run]
        if row.combination in run.external_names:
            continue  # an outside colorizer: scored, never trained here
        for seed in run.seeds:
            yield row, seed, run.folder.cell(row.combination, seed)


def metric_order(runs: list[Run]) -> list[str]:
    """Metrics in the order the registry lists them, unknown ones after, as first seen."""
    seen = list(dict.fromkeys(m for run in runs for m in run.metrics["metric"]))
    known = [m for m in METRICS if m in seen]
    return known + [m for m in seen if m not in known]


def _join_notes(notes: pd.Series) -> str:
    return "; ".join(dict.fromkeys(n for n in notes if isinstance(n, str) and n))


def summarize(runs: list[Run]) -> pd.DataFrame:
    """One tidy row per (table row, metric): mean and sample std over the seeds that
    produced a value, how many did, whether it is the column's best, and its difference
    from the gray baseline of its run (positive = better, in the metric's direction)."""
    rows = table_rows(runs)
    metrics = metric_order(runs)
    records = []
    by_run = {r.name: r for r in runs}
    for row in rows:
        frame = by_run[row.run].metrics
        for metric in metrics:
            cells = frame[(frame.combination == row.combination) & (frame.metric == metric)]
            values = cells["value"].dropna()
            records.append({
                "run": row.run, "baseline": row.baseline, "row": row.label, "combination": row.combination,
                "kind": BASELINE if row.combination in BASELINES else OUTSIDE if row.combination in by_run[row.run].external_names
                else MODEL, "metric": metric,
                "direction": direction(metric),
                "mean": values.mean() if len(values) else np.nan,
                "std": values.std(ddof=1) if len(values) > 1 else np.nan,
                "seeds": len(values), "seeds_total": cells["seed"].nunique(),
                "note": _join_notes(cells["note"]),
            })
    summary = pd.DataFrame.from_records(records)
    sets = photo_sets(runs)
    summary["photo_set"] = [sets[(r.run, r.combination)][0] for r in summary.itertuples()]
    summary["photos"] = pd.array([sets[(r.run, r.combination)][1] for r in summary.itertuples()], dtype="Int64")
    not_ranked = unranked(runs, summary)
    summary["ranked"] = [
        r.combination not in BASELINES and (r.run, r.combination) not in not_ranked for r in summary.itertuples()
    ]
    summary["not_ranked_because"] = [not_ranked.get((r.run, r.combination), "") for r in summary.itertuples()]
    summary["best"] = _best_flags(summary)
    summary["vs_gray"] = _vs_gray(summary)
    return summary[SUMMARY_COLUMNS]


def cell_steps(run: Run, combination: str, seed: int) -> int | None:
    """Optimizer steps the cell trained: its record's, or its log's length for runs made
    before records counted them; None if neither is there."""
    record = run.cell_record(combination, seed) or {}
    if record.get("steps") is not None:
        return int(record["steps"])
    path = run.folder.cell(combination, seed).train_log
    return sum(1 for _ in path.open()) - 1 if path.is_file() else None


def unranked(runs: list[Run], summary: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``{(run, combination): why}`` for each row that is shown but never ranked, bolded or
    named a winner: a model that has not learnt to colour yet, a loss that ran on surrogate
    weights (``perceptual[random-vgg]``: not the loss its name means), and a row scored on
    some val photos alone (its means are over other photos than the others'). The one
    answer to "which rows are ranked" that the table, the reading and the caveats read."""
    out = {}
    by_run = {r.name: r for r in runs}
    cf = summary[summary.metric == "cf"].set_index(["run", "combination"])["mean"]
    for r in summary.drop_duplicates(["run", "combination"]).itertuples():
        if r.combination in BASELINES:
            continue
        run = by_run[r.run]
        why = []
        part = partial_photos(run, r.combination)
        if part:
            why.append(f"scored on {part[0]} of the {part[1]} val photos (--allow-missing), so its means are over "
                       "other photos than the other rows' and are not ranked against them; the paired tests compare "
                       "it with each row on the photos both have")
        tags = next((c.get("tags") or {} for c in run.combinations if c.get("name") == r.combination), {})
        if tags:
            terms = _and([f"its {term} term ran on {tag} weights" for term, tag in tags.items()])
            why.append(f"{terms} (the pretrained file was missing), so it is not the loss the literature means: shown "
                       "for reference, never ranked; `bench weights` says how to get the file, then rerun")
        trained = r.combination in run.combination_names
        steps = [n for n in (cell_steps(run, r.combination, s) for s in run.seeds) if n is not None] if trained else []
        truth_cf = cf.get((run.name, TRUTH), np.nan)
        model_cf = cf.get((r.run, r.combination), np.nan)
        if steps and min(steps) < MIN_RANKED_STEPS:
            why.append(
                f"trained only {min(steps)} step{'s' * (min(steps) != 1)} (fewer than {MIN_RANKED_STEPS}); "
                "train longer with --steps"
            )
        elif math.isfinite(truth_cf) and math.isfinite(model_cf) and model_cf < MIN_CF_FRACTION * truth_cf:
            how = f"still ≈ gray after {max(steps)} steps" if steps else "≈ gray"
            why.append(
                f"{how}: colourfulness {model_cf:.1f} against the photos' {truth_cf:.1f} (under {MIN_CF_FRACTION:.0%})"
            )
        if why:
            out[(r.run, r.combination)] = "; and ".join(why)
    return out


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def decimals(values) -> int:
    """Digits after the point that show about four significant figures of a column."""
    finite = [abs(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v != 0]
    if not finite:
        return 2
    return int(min(6, max(0, 3 - math.floor(math.log10(max(finite))))))


def _best_flags(summary: pd.DataFrame) -> pd.Series:
    """The best mean per metric and photo set, as the table prints it: values that round to
    the same printed number are all best (a tie the reader could not tell apart), among the
    ranked rows of the runs with the most seeds and gray. A column with no ranked row that
    has a value bolds nothing: gray alone is no winner, and neither is a row of other photos."""
    best = pd.Series(False, index=summary.index)
    # The ground truth is the target, not a contender: it never takes the bold.
    contenders = summary[(summary.combination == GRAY) | summary.ranked]
    for (metric, _), group in contenders.groupby(["metric", "photo_set"], sort=False):
        d = group["direction"].iloc[0]
        models = group[group.combination != GRAY].dropna(subset=["mean"])
        if d not in RANKED or models.empty:
            continue
        # a run of fewer seeds is no match for one of more (a one-seed run's row against a
        # three-seed run's mean of the same model): only the runs with the most seeds contend
        if models["seeds_total"].nunique() > 1:
            group = group[(group.combination == GRAY) | (group["seeds_total"] == models["seeds_total"].max())]
        means = group["mean"].dropna()
        shown = means.round(decimals(means.tolist()))
        target = shown.max() if d == "higher" else shown.min()
        best[shown.index[shown == target]] = True
    return best


def _vs_gray(summary: pd.DataFrame) -> pd.Series:
    gray = summary[summary.combination == GRAY].set_index(["run", "metric"])["mean"]
    sign = summary["direction"].map({"higher": 1.0, "lower": -1.0})
    base = [gray.get((b, m), np.nan) for b, m in zip(summary["baseline"], summary["metric"])]
    out = sign * (summary["mean"] - np.asarray(base, dtype=float))
    # a row of other photos than gray's: its gain is the paired one, on the photos both have
    # (``bench.report.compare.paired_gains`` fills it in from the paired tests)
    gray_sets = set(summary.loc[summary.combination == GRAY, "photo_set"])
    return out.where(~summary.combination.isin(BASELINES) & summary["photo_set"].isin(gray_sets))


def format_cell(mean: float, std: float, seeds: int, seeds_total: int, digits: int) -> str:
    """``mean ± std`` (just the mean for one seed); ``—`` where no seed gave a value."""
    if seeds == 0 or math.isnan(mean):
        return "—"
    if math.isinf(mean):  # PSNR of a perfect prediction (no error at all)
        return "∞" if mean > 0 else "-∞"
    text = f"{mean:.{digits}f}"
    if seeds > 1 and math.isfinite(std):
        text += f" ± {std:.{digits}f}"
    if seeds < seeds_total:
        text += f" ({seeds}/{seeds_total} seeds)"
    return text


def seedless_rows(summary: pd.DataFrame) -> set[str]:
    """The table rows whose value repeats for every seed: outside colorizers (`bench score`),
    whose summary.csv rows say ``outside colorizer`` in ``kind``."""
    return set(summary.loc[summary.get("kind", pd.Series(dtype=str)) == OUTSIDE, "row"])


@dataclass(frozen=True)
class TableCell:
    """One number of the main table, as every rendering of it prints it (``format_cell``)."""

    mean: float
    std: float       # NaN where no spread is printed (a seed-independent row, one seed)
    seeds: int
    seeds_total: int
    digits: int
    best: bool


def table_cells(summary: pd.DataFrame) -> tuple[list[str], list[tuple[str, bool, list[TableCell]]]]:
    """The main table's content, for markdown (``markdown_table``) and LaTeX
    (``bench.report.latex``) alike: its metrics (the columns, in order) and, per row, its
    label, whether it is marked *not ranked*, and its cells."""
    metrics = list(dict.fromkeys(summary["metric"]))
    digits = {m: decimals(summary.loc[summary.metric == m, "mean"].tolist()) for m in metrics}
    cells = summary.set_index(["row", "metric"])
    ranked = summary.groupby("row", sort=False).agg(ranked=("ranked", "all"), combination=("combination", "first"))
    seedless = seedless_rows(summary)
    rows = []
    for row in dict.fromkeys(summary["row"]):
        marked = not (ranked.loc[row, "ranked"] or ranked.loc[row, "combination"] in BASELINES)
        out = []
        for m in metrics:
            r = cells.loc[(row, m)]
            # gray, the ground truth and outside colorizers do not depend on the seed: no ± 0 to read past
            std = np.nan if r["combination"] in BASELINES or row in seedless else r["std"]
            out.append(TableCell(r["mean"], std, int(r["seeds"]), int(r["seeds_total"]), digits[m], bool(r["best"])))
        rows.append((row, marked, out))
    return metrics, rows


def markdown_table(summary: pd.DataFrame) -> str:
    """The main table: rows in order, one column per metric with its arrow, best in bold."""
    metrics, rows = table_cells(summary)
    head = ["combination"] + [f"{m} {arrow(m)}".rstrip() for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(metrics)]
    for row, marked, cells in rows:
        out = [cell(row) + (" (not ranked)" if marked else "")]
        for c in cells:
            text = format_cell(c.mean, c.std, c.seeds, c.seeds_total, c.digits)
            out.append(f"**{text}**" if c.best and text != "—" else text)
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


# Fewer timed steps than this (after the warm-up) and a median step time is noise.
MIN_TIMED_STEPS = 20


@dataclass(frozen=True)
class CostRow:
    """What one combination's training cost: the median wall time of a step after warm-up
    (median over the seeds' medians), the mean training time of a cell (None if not
    recorded), that step time over the run's cheapest combination's, and the fewest steps
    timed in a seed."""

    run: str
    combination: str
    label: str
    step: float
    whole: float | None
    ratio: float
    timed: int


def training_cost(runs: list[Run]) -> list[CostRow]:
    """Each trained combination's cost, from its cells' records: the price of a loss."""
    out = []
    for run in runs:
        suffix = f" · {run.name}" if len(runs) > 1 else ""
        times = {}
        for row in table_rows([run]):
            if row.combination in BASELINES:
                continue
            records = [r for r in (run.cell_record(row.combination, s) for s in run.seeds) if r]
            step = [r["step_seconds"] for r in records if r.get("step_seconds") is not None]
            whole = [r["seconds"] for r in records if r.get("seconds") is not None]
            timed = min((r.get("timed_steps", 0) for r in records), default=0)
            if step:
                times[row.combination] = (float(np.median(step)), float(np.mean(whole)) if whole else None, timed)
        cheapest = min((t for t, _, _ in times.values()), default=math.nan)
        out += [CostRow(run.name, name, name + suffix, step, whole, step / cheapest, timed)
                for name, (step, whole, timed) in times.items()]
    return out


def seed_values(runs: list[Run], summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every seed's value under its table row label, for plots: row, metric, seed, value,
    and ``gain``, the value's difference from its gray baseline's mean in the metric's
    direction (positive = better; empty for gray itself and metrics of unknown direction).
    A row scored on part of the photos has no gain over gray's mean of all of them: its gain
    is ``summary``'s paired ``vs_gray`` (on the photos both have), else empty."""
    by_run = {r.name: r for r in runs}
    paired = summary.set_index(["row", "metric"])["vs_gray"] if summary is not None else pd.Series(dtype=float)
    parts = []
    for row in table_rows(runs):
        frame = by_run[row.run].metrics
        part = frame[frame.combination == row.combination][["metric", "seed", "value"]].copy()
        part["value"] = part["value"].replace([np.inf, -np.inf], np.nan)  # a perfect PSNR has no bar to draw
        part.insert(0, "row", row.label)
        base = by_run[row.baseline].metrics if row.baseline else frame.iloc[:0]
        gray = base[base.combination == GRAY].groupby("metric")["value"].mean()
        sign = part["metric"].map(direction).map({"higher": 1.0, "lower": -1.0})
        gain = sign * (part["value"] - part["metric"].map(gray))
        part["gain"] = gain if row.combination not in BASELINES else np.nan
        if partial_photos(by_run[row.run], row.combination):
            part["gain"] = [paired.get((row.label, m), np.nan) for m in part["metric"]]
        parts.append(part)
    columns = ["row", "metric", "seed", "value", "gain"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
