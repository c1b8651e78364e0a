"""``bench report`` as a library call: report.md, its figures and summary.csv for one run
or a comparison of several.

Numbers come from each run's metrics.csv; figures that need images (colourfulness, sample
grid) rerun the saved generators on the run's val photos, which is cheap next to training.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from colorbench_datasets import model_to_rgb
from colorbench_datasets.images import display_name
from colorbench_datasets.tensors import resize_and_crop

from bench.colorize import colorize_images, gray_image
from bench.escape import cell, code, csv_cell, link_target, spreadsheet_frame
from bench.report import compare, figures
from bench.report.curves import IMPROVING, still_improving, val_curves
from bench.report.gallery import write_gallery
from bench.report.photos import load_val_split, val_sources
from bench.report.summary import (
    OUTSIDE,
    RANKED,
    arrow,
    decimals,
    markdown_table,
    model_cells,
    seed_values,
    summarize,
    table_rows,
    unranked,
)
from bench.rundir.layout import BASELINES, GRAY, TRUTH, RunFolder
from bench.rundir.read import (
    Run,
    RunFolderError,
    external_note,
    load_run,
    read_tidy_csv,
    read_train_log,
    refuse_out_in_photos,
)
from bench.rundir.write import all_or_nothing, atomic_write_text, write_csv
from bench.score.metrics import METRICS, colorfulness, derived_from
from bench.score.protocol import protocol_lines, scoring_protocol_of
from bench.score.scorer import load_generator, predict_ab
from losses import is_adversarial

log = logging.getLogger("colorbench")


FIGURES = {
    "scores": "fig_scores.png",
    "training": "fig_training.png",
    "curves": "fig_curves.png",
    "colorfulness": "fig_colorfulness.png",
    "samples": "fig_samples.png",
    "pairwise": "fig_pairwise.png",
}


@dataclass
class ReportSettings:
    samples: int = 6          # val photos in the sample grid
    display_size: int = 256   # px per photo in the sample grid
    device: str = "cpu"
    batch_size: int = 64


@dataclass
class Report:
    path: Path
    figures: dict[str, Path]
    caveats: list[str] = field(default_factory=list)


def _threads(config: dict) -> str:
    """How the cells ran: threads per cell (config.json's ``threads`` is per cell since runs
    record their launch) and, for a launched run, how."""
    threads, launch = config.get("threads", "?"), config.get("launch")
    text = f"{threads} thread{'' if threads == 1 else 's'}"
    if not launch:
        return text
    text += " per cell"
    if config.get("world_size", 1) > 1:
        text += f" × {config['world_size']} processes"
    return text + (f", {launch['launcher']} launcher" if launch.get("launcher") != "serial" else "")


def _duration(seconds) -> str:
    if seconds is None:
        return "unfinished"
    seconds = float(seconds)
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{seconds:.1f}s")


def _budget(run: Run) -> str:
    """How long each cell trained: a step budget, or epochs (runs made before --steps)."""
    o, steps = run.options, run.config.get("steps_per_cell")
    train = run.config.get("data", {}).get("train_images")
    if o.get("steps") is not None or (steps and o.get("epochs") is None):
        n = o.get("steps") or steps
        passes = f" ({n * o.get('batch_size', 0) / train:.1f} passes over the photos)" if train else ""
        return f"**steps** {n}{passes}"
    return f"**epochs** {o.get('epochs', '?')}" + (f" ({steps} steps)" if steps else "")


def run_header(run: Run) -> list[str]:
    """What was run, one bullet per fact, from config.json."""
    o, c, d = run.options, run.config, run.config.get("data", {})
    combos = ", ".join(f"{code(n)}" for n in run.combination_names) or "none"
    width = f" (width {o['width']})" if "width" in o else ""
    adversarial = any(is_adversarial(c["spec"]) for c in run.combinations)
    if o.get("disc_width") and adversarial:
        width += f" · **discriminator** {code(o.get('discriminator', 'patchgan'))} (width {o['disc_width']})"
    trained = bool(run.combinations) or not run.externals
    lines = [
        f"- **Combinations** ({len(run.combination_names)}): {combos}; `--losses {o.get('losses', '?')}`",
        f"- **Seeds**: {', '.join(map(str, run.seeds))} · {_budget(run)} · "
        f"**batch** {o.get('batch_size', '?')} · **lr** {o.get('lr', '?')} · **size** {o.get('size', '?')} px · "
        f"**generator** {code(o.get('generator', '?'))}{width} · **preset** {o.get('preset', '?')}",
    ] if trained else []
    if run.externals:
        lines.append(f"- **Outside colorizers** ({len(run.externals)}, `bench score`): " + ", ".join(
            f"{code(e['name'])} from {code(e.get('folder', '?'))}" + (f" ({note})" if (note := external_note(e)) else "")
            for e in run.externals) + ("" if trained else f" · **size** {o.get('size', '?')} px"))
    lines += [
        f"- **Data**: {d.get('source', '?')} — {d.get('train_images', '?')} train / "
        f"{d.get('val_images', '?')} val images",
        f"- **Device**: {c.get('device', '?')} ({c.get('device_name', '?')}), {c.get('precision', '?')}, "
        f"{_threads(c)} · **wall time** {_duration(c.get('wall_seconds'))}"
        + (f" · started {c['started']}" if c.get("started") else "") if trained else
        f"- **Device**: {c.get('device', '?')} · scored {c.get('started', '?')}",
    ]
    versions = c.get("versions", {})
    if versions:
        lines.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def protocol_caveat(runs: list[Run]) -> list[str]:
    """Runs scored under different protocols in one report: said first (docs/protocols.md)."""
    protocols = {run.name: scoring_protocol_of(run.config) for run in runs}
    if len({tuple(p.settings().items()) for p in protocols.values()}) < 2:
        return []
    return ["**the runs were scored under different protocols** (" + ", ".join(
        f"{code(name)}: `{p.label}`" for name, p in protocols.items()) + "): rows of different protocols are "
        "not comparable, metric by metric (docs/protocols.md says which settings change which number)"]


def caveats(runs: list[Run], summary: pd.DataFrame) -> list[str]:
    """Everything that limits how far the numbers can be trusted, each said once."""
    out = protocol_caveat(runs)
    for run in runs:
        prefix = f"{code(run.name)}: " if len(runs) > 1 else ""
        d = run.config.get("data", {})
        out += [prefix + p for p in run.problems]  # damaged files, and how they were read
        if "finished" not in run.config:
            out.append(prefix + "the run has not finished (config.json has no `finished` time); missing cells are absent from the table")
        if d.get("is_sample"):
            out.append(prefix + "trained and scored on the built-in **sample** photos: a smoke test of the pipeline, not a benchmark")
        where = run.config.get("baselines_scored_on")
        kinds = {(run.cell_record(n, k) or {}).get("device") for n in run.combination_names for k in run.seeds} - {None}
        if where and kinds - {where}:
            out.append(prefix + f"gray and the photos were scored on the **{where}**, the models on "
                       f"{_and(sorted(kinds))}: their last digits may differ for that alone (a login node without "
                       "a GPU planned the run)")
        skipped = d.get("skipped", [])
        if skipped:
            by_split = {s: sum(x["split"] == s for x in skipped) for s in ("train", "val")}
            out.append(prefix + f"{len(skipped)} photo(s) skipped ({by_split['train']} train, {by_split['val']} val; "
                       "greyscale or unreadable), listed in config.json")
        out += [prefix + w for w in d.get("warnings", [])]
        frame = run.metrics
        diverged = frame[frame.note.str.startswith("diverged")][["combination", "seed", "note"]].drop_duplicates()
        for r in diverged.itertuples():
            out.append(prefix + f"{code(r.combination)} seed {r.seed} {r.note}: its scores are missing and left out of the mean")
    # Metric notes (sample sizes, missing weights), each said once with the rows it concerns;
    # divergence is already reported per cell above.
    # The ground-truth rows' notes only say what they are. Metrics sharing a note and rows
    # (fid and kid lacking the same weights file) are named together.
    scored = summary[summary.combination != TRUTH]
    notes: dict[tuple[str, str], list[str]] = {}
    for r in scored.itertuples():
        for note in filter(None, r.note.split("; ")):
            # divergence is said per cell above; a row on part of the photos in its not-ranked caveat
            if not note.startswith("diverged") and not (r.kind == OUTSIDE and not r.ranked and "--allow-missing" in note):
                notes.setdefault((r.metric, note), []).append(r.row)
    grouped: dict[tuple[str, tuple], list[str]] = {}
    for (metric, note), rows in notes.items():
        grouped.setdefault((note, tuple(rows)), []).append(metric)
    for (note, rows), metrics in grouped.items():
        who = "all rows" if len(rows) == scored["row"].nunique() else ", ".join(f"{code(r)}" for r in rows)
        out.append(f"{', '.join(f'{code(m)}' for m in metrics)} ({who}): {note}")
    for (run_name, combination), why in unranked(runs, summary).items():
        prefix = f"{code(run_name)}: " if len(runs) > 1 else ""
        out.append(prefix + f"{code(combination)} is **not ranked**: {why}")
    unknown = [m for m in dict.fromkeys(summary.metric) if not summary.loc[summary.metric == m, "direction"].iloc[0]]
    if unknown:
        out.append(f"direction unknown to this version for {', '.join(f'{code(m)}' for m in unknown)}: no arrow, no bold")
    numerics = {f"{r.config.get('precision', '?')} on {str(r.config.get('device', '?')).split(':')[0]}" for r in runs}
    if len(numerics) > 1:
        out.append("the runs were trained in **different precisions or devices** ("
                   + ", ".join(f"{code(r.name)}: {r.config.get('precision', '?')} on {r.config.get('device', '?')}" for r in runs)
                   + "): their differences include numerics, not only losses")
    keys = {(r.config.get("data", {}).get("val_files_sha256"), r.options.get("size")) for r in runs}
    if len(runs) > 1 and len(keys) > 1:
        out.append("the runs were scored on **different val photos or sizes**: rows of different photos are never ranked "
                   "against each other (the bold, the leads and the paired tests stay within the rows of one photo set)")
    return out


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _fmt(value: float, digits: int, signed: bool = False) -> str:
    if math.isinf(value):  # a perfect prediction's PSNR
        return ("+" if signed and value > 0 else "") + ("∞" if value > 0 else "-∞")
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _descriptive_sentences(summary: pd.DataFrame, digits: dict[str, int]) -> list[str]:
    """A descriptive metric (``cf``) is stated against the val photos' own value, never ranked."""
    out = []
    for metric, group in summary[summary.direction == "descriptive"].groupby("metric", sort=False):
        d = digits[metric]
        models = group[~group.combination.isin(BASELINES)].dropna(subset=["mean"]).sort_values("mean")
        truth = group[group.combination == TRUTH].dropna(subset=["mean"])
        if models.empty:
            continue
        text = f"**{metric}** (descriptive, not ranked): "
        if len(truth):
            text += f"the val photos themselves score {_fmt(truth['mean'].iloc[0], d)}; "
        low, high = models.iloc[0], models.iloc[-1]
        text += (f"the models range from {_fmt(low['mean'], d)} ({code(low['row'])}) to {_fmt(high['mean'], d)} ({code(high['row'])})"
                 if len(models) > 1 else f"{code(low['row'])} scores {_fmt(low['mean'], d)}")
        ranks = ", ".join(f"{code(m)}" for m in derived_from(metric))
        out.append(text + (f" — {ranks} ranks the distance to the photos." if ranks else "."))
    return out


def _unranked_why(models: pd.DataFrame) -> str:
    """Why none of ``models`` (one photo set's model rows, none ranked) is: in a few words."""
    whys = {r.row: r.not_ranked_because for r in models.drop_duplicates("row").itertuples()}

    def short(why: str) -> str:
        said = []
        if "weights" in why:
            said.append("ran on surrogate (random) weights")
        if "trained only" in why:
            said.append("has not learnt to colour yet")
        elif "≈ gray" in why:
            said.append("is still ≈ gray")
        return " and ".join(said) or "is not ranked"

    kinds = {short(w) for w in whys.values()}
    if kinds == {"has not learnt to colour yet"}:
        return "none has learnt to colour yet"
    if len(kinds) == 1:
        return ("each " if len(whys) > 1 else f"{code(next(iter(whys)))} ") + kinds.pop()
    return ", ".join(f"{code(row)} {short(w)}" for row, w in whys.items())


def _lead(best, second, metric: str, pairs: pd.DataFrame | None, d: int) -> str:
    """``best``'s lead over ``second`` in words. Its size is the paired Δ where the two were
    tested (the same photos and seeds; then it is the gap of the table's means), else the gap
    of the means of one photo set (rows of different runs); never a gap of means over other
    photos, which the two rows are never ranked on."""
    gap = abs(best["mean"] - second["mean"])
    if not math.isfinite(gap):
        return f" (no error at all), ahead of {code(second['row'])}"
    tested = compare.lead(pairs, metric, best["row"], second["row"], d) if pairs is not None else None
    if tested is None:
        text = f", {_fmt(gap, d)} ahead of {code(second['row'])}"
        spreads = [v for v in (best["std"], second["std"]) if math.isfinite(v)]
        if spreads:
            inside = gap <= max(spreads)
            text += f" ({'within' if inside else 'beyond'} the seed spread of ±{_fmt(max(spreads), d)})"
        return text
    delta, said = tested
    if abs(delta - gap) < 0.5 * 10 ** -d:  # the same photos and seeds: the paired Δ is the gap of the means
        return f", {_fmt(delta, d)} ahead of {code(second['row'])} ({said})"
    # the means average different seeds (one diverged): the paired Δ, on the seeds both have, is quoted
    if delta >= 0:
        return (f", {_fmt(delta, d)} ahead of {code(second['row'])} on the seeds both have ({said}; the table's means, "
                f"over different seeds, differ by {_fmt(gap, d)})")
    return (f" on the table's means, which average different seeds; on the seeds both have {code(second['row'])} is "
            f"ahead ({said})")


def _standing(summary: pd.DataFrame, digits: dict[str, int], sets: list[str]) -> list[str]:
    """A line per row: where it stands against gray, at the table's precision (paired, on the
    photos both have, for a row of other photos than gray's)."""
    standing = []
    for row, group in summary[~summary.combination.isin(BASELINES)].groupby("row", sort=False):
        group = group.dropna(subset=["vs_gray"])
        if group.empty:
            continue
        shown = {r.metric: round(r.vs_gray, digits[r.metric]) for r in group.itertuples()}
        verdicts = []
        for label, test in (("better than gray on", lambda v: v > 0), ("worse on", lambda v: v < 0), ("level on", lambda v: v == 0)):
            hits = [f"{m} ({_fmt(v, digits[m], True)})" if v else m for m, v in shown.items() if test(v)]
            if hits:
                verdicts.append(f"{label} {', '.join(hits)}")
        if not any(v > 0 for v in shown.values()):
            verdicts[0] = verdicts[0].replace("worse on", "worse than gray on").replace("level on", "level with gray on")
        paired = " (paired, on the photos both have)" if group["photo_set"].iloc[0] not in sets else ""
        standing.append(f"{code(row)}{paired}: " + "; ".join(verdicts) + ".")
    return standing


def reading(summary: pd.DataFrame, pairs: pd.DataFrame | None = None) -> tuple[list[str], list[str]]:
    """Built from the numbers: a sentence per metric (who wins, by how much over the
    runner-up, and whether the paired tests of ``pairs`` (``bench.report.compare.pairwise``) call
    that lead real, else against the seed spread) and a line per combination (where it
    stands against gray, at the table's precision). Leads are called among the ranked rows
    of one photo set (``summary.photo_set``) alone, as the table bolds them."""
    winners = []
    digits = {m: decimals(summary.loc[summary.metric == m, "mean"].tolist()) for m in summary.metric.unique()}
    scored = summary[summary.combination != TRUTH]
    # the photo sets a lead can be called on: those with gray or a ranked row (a partial row is a set of its own)
    sets = [s for s in dict.fromkeys(scored["photo_set"])
            if ((scored.photo_set == s) & ((scored.combination == GRAY) | scored.ranked)).any()]
    for metric, rows in summary[summary.direction.isin(RANKED)].groupby("metric", sort=False):
        d = digits[metric]
        said = []
        for photo_set in sets:
            own = rows[rows.photo_set == photo_set]
            group = own[((own.combination == GRAY) | own.ranked)].dropna(subset=["mean"])
            where = f"on {code(photo_set)}'s val photos, " if len(sets) > 1 else ""
            if not group["ranked"].any():  # no model ranked: gray alone is no winner
                models = own[~own.combination.isin(BASELINES)].dropna(subset=["mean"])
                if len(models):
                    said.append(f"{where}no model is ranked ({_unranked_why(models)}, see the caveats); the models "
                                f"score {_fmt(models['mean'].min(), d)} to {_fmt(models['mean'].max(), d)}"
                                + (f", gray {_fmt(group['mean'].iloc[0], d)}" if len(group) else ""))
                continue
            ranked = group.sort_values("mean", ascending=group["direction"].iloc[0] != "higher")
            tied = ranked[ranked.best]
            best, rest = (tied if len(tied) else ranked).iloc[0], ranked[~ranked.best]
            names = _and([f"{code(r)}" for r in tied["row"]] or [code(best["row"])])
            text = f"{where}{names} {'is' if len(tied) <= 1 else 'tie as'} best at {_fmt(best['mean'], d)}"
            if len(rest):
                text += _lead(best, rest.iloc[0], metric, pairs, d)
            if (tied["combination"] == GRAY).any():
                text += "; no ranked combination beats the gray baseline on it"
            said.append(text)
        if said:
            winners.append(f"**{metric}** {arrow(metric)}: " + "; ".join(said) + ".")
    winners += _descriptive_sentences(summary, digits)
    partial = scored[~scored.photo_set.isin(sets)].drop_duplicates("row")
    for r in partial.itertuples():
        winners.append(f"{code(r.row)} was scored on part of the val photos alone: it is not ranked against rows "
                       "scored on all of them; its standing against gray below and its paired tests are on the photos "
                       "both have.")
    standing = _standing(summary, digits, sets)
    seeds = int(summary["seeds_total"].max()) if len(summary) else 0
    if seeds <= 1 and winners and pairs is not None and len(pairs):
        winners.append("With one seed per combination the tests compare these trained models photo by photo; "
                       "rerun with `--seeds 0,1,2` to know whether a lead holds across training runs.")
    elif seeds <= 1 and winners:
        winners.append("With one seed per combination there is no spread to tell these differences from "
                       "noise; rerun with `--seeds 0,1,2` before drawing conclusions.")
    return winners, standing


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


def pick_samples(names: list[str], count: int) -> list[str]:
    """Fixed val photos, evenly spread over the sorted names so every source of a mixed val
    set shows up; the same photos in every report of the same val set."""
    names = sorted(names)
    if count >= len(names):
        return names
    idx = np.linspace(0, len(names) - 1, count).round().astype(int)
    return [names[i] for i in dict.fromkeys(idx)]


CHUNK = 256  # val images per pass: a large val set never has to fit in memory as floats


def prediction_colorfulness(G, val, batch_size: int) -> torch.Tensor:
    """Per-image colourfulness of ``G``'s predictions on ``val``, in chunks."""
    out = []
    for i in range(0, len(val), CHUNK):
        L = val.L[i : i + CHUNK]
        ab = predict_ab(G, L, batch_size).cpu()
        out.append(colorfulness(model_to_rgb(L.cpu().float(), ab)))
    return torch.cat(out)


def image_figures(runs: list[Run], order: list[str], palette: dict, out: Path, settings: ReportSettings) -> tuple[dict, list[str]]:
    """Colourfulness distribution and sample grid; both need the val photos and the
    generators. Returns the figures written and why any was not."""
    device = torch.device(settings.device)
    first = runs[0]
    try:
        split = load_val_split(first)
        items = dict(val_sources(first))
    except (OSError, ValueError) as exc:
        return {}, [f"colourfulness and sample figures skipped: the val photos could not be read ({exc})"]
    chosen = pick_samples(split.names, settings.samples)
    originals = {}
    for name in chosen:
        photo = items[name]()
        s = settings.display_size
        originals[name] = _pil(resize_and_crop(photo, s, s))

    truth = [colorfulness(split.rgb[i : i + CHUNK].float() / 255) for i in range(0, len(split), CHUNK)]
    cf_rows = [pd.DataFrame({"row": TRUTH, "value": torch.cat(truth).numpy()})]
    columns = [("grayscale input", [np.asarray(gray_image(im)) for im in originals.values()])]
    problems = []
    splits = {first.name: split}
    by_run = {r.name: r for r in runs}
    rows = [r for r in table_rows(runs) if r.combination not in BASELINES]
    outside = [code(r.label) for r in rows if r.combination in by_run[r.run].external_names]
    for row in rows:
        run = by_run[row.run]
        if row.combination in run.external_names:
            continue
        if run.name not in splits:
            try:
                splits[run.name] = load_val_split(run)
            except (OSError, ValueError) as exc:
                problems.append(f"{code(row.label)} left out of the image figures: its val photos could not be read ({exc})")
                continue
        val = splits[run.name]
        grid_done = damaged = False
        for seed in run.seeds:
            path = run.folder.cell(row.combination, seed).generator
            if not path.is_file():
                continue
            try:
                G = load_generator(path, device)
            except ValueError as exc:  # a damaged generator.pt: named, and left out
                problems.append(f"{code(row.label)} seed {seed} left out of the image figures: {exc}")
                damaged = True
                continue
            cf_rows.append(pd.DataFrame({"row": row.label, "value": prediction_colorfulness(G, val, settings.batch_size).numpy()}))
            if not grid_done:
                size = int(G.meta.get("size", run.options["size"]))
                title = row.label + (f" (seed {seed})" if len(run.seeds) > 1 else "")
                columns.append((title, [np.asarray(im) for im in colorize_images(G, list(originals.values()), size)]))
                grid_done = True
        if not grid_done and not damaged:
            problems.append(f"{code(row.label)} has no trained generator ({_cell_state(run, row.combination)}): left out of the image figures")
    columns.append(("ground truth", [np.asarray(im) for im in originals.values()]))
    if outside:
        problems.append(f"outside colorizers ({', '.join(outside)}) are not in the sample grid or the colourfulness "
                        "figure, which rerun generators: gallery.html shows their images")
    written = {}
    figures.colorfulness_figure(pd.concat(cf_rows, ignore_index=True), order, palette, out / FIGURES["colorfulness"])
    written["colorfulness"] = out / FIGURES["colorfulness"]
    figures.sample_grid(columns, chosen, out / FIGURES["samples"], settings.display_size)
    written["samples"] = out / FIGURES["samples"]
    return written, problems


# Fewer timed steps than this (after the warm-up) and a median step time is noise.
MIN_TIMED_STEPS = 20


def training_cost(runs: list[Run]) -> tuple[list[str], list[str]]:
    """A markdown table of each combination's median step time (after warm-up; median over
    the seeds' medians), its training time per cell, and its step time against the run's
    cheapest combination: the price of a loss. Also the caveats on those timings."""
    lines, notes = [], []
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
        if not times:
            continue
        cheapest = min(t for t, _, _ in times.values())
        for name, (step, whole, timed) in times.items():
            lines.append(f"| {cell(name + suffix)} | {step * 1000:.0f} ms | {_duration(whole)} | {step / cheapest:.1f}× |")
        short = [n for n, (_, _, timed) in times.items() if timed < MIN_TIMED_STEPS]
        if short:
            notes.append(
                (f"{code(run.name)}: " if len(runs) > 1 else "")
                + f"step times of {', '.join(f'{code(n)}' for n in short)} rest on fewer than {MIN_TIMED_STEPS} "
                "steps after warm-up: too few to compare costs"
            )
    if not lines:
        return [], notes
    head = ["| combination | median step | training per cell | × cheapest step |", "| --- | ---: | ---: | ---: |"]
    return head + lines, notes


def _cell_state(run: Run, combination: str) -> str:
    states = []
    for seed in run.seeds:
        record = run.cell_record(combination, seed)
        states.append(record.get("status", "unfinished") if record is not None else "not trained yet")
    return ", ".join(dict.fromkeys(states))


def _pil(arr: np.ndarray):
    from PIL import Image

    return Image.fromarray(arr)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _link(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` as a markdown link's destination."""
    return link_target(_rel(path, start))


def protocol_section(runs: list[Run]) -> list[str]:
    """How each number was made (config.json's ``protocol``): papers differ on these."""
    md = ["### How the numbers were made", ""]
    for run in runs:
        if len(runs) > 1:
            md += [f"{code(run.name)}:", ""]
        md += protocol_lines(run.config) + [""]
    return md


def metric_legend(summary: pd.DataFrame) -> str:
    lines = []
    for m in dict.fromkeys(summary.metric):
        info = METRICS.get(m)
        lines.append(f"{code(m)} {arrow(m)} {info.description}" if info else f"{code(m)}: not in this version's metric registry")
    return " · ".join(lines)


def check_report_out(runs: list[Run], out: Path, overwrite: bool = False) -> None:
    """Refuse to write a report over another run's report, or over a report on other runs,
    unless ``overwrite``: ``bench report A --out B``, B being another run, would replace
    B's report.md, summary.csv and figures."""
    out, target = Path(out), RunFolder(out)
    if overwrite or any(os.path.realpath(r.path) == os.path.realpath(out) for r in runs):
        return
    names = ", ".join(r.name for r in runs)
    fix = "choose another --out, or pass --overwrite to replace it"
    if target.config.is_file():
        raise RunFolderError(f"--out {out} is another run's folder: its report.md, summary.csv and figures would be "
                             f"replaced by a report on {names}; {fix}")
    if target.summary.is_file():
        try:
            previous = set(read_tidy_csv(target.summary, usecols=["run"])["run"].astype(str))
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            previous = set()
        if previous != {csv_cell(display_name(r.name)) for r in runs}:  # as summary.csv writes names
            raise RunFolderError(f"--out {out} holds a report on other runs ({', '.join(sorted(previous)) or 'unknown'}), "
                                 f"not on {names}; {fix}")
    elif target.report.is_file():
        raise RunFolderError(f"--out {out} holds a report.md that `bench report` did not write for {names}; {fix}")


def build_report(run_dirs: list[str | Path], out: str | Path | None = None, settings: ReportSettings | None = None,
                 overwrite: bool = False) -> Report:
    """Write report.md, summary.csv and the figures into ``out`` (default: the first run).
    Another run's folder, or a folder with a report on other runs, only with ``overwrite``."""
    settings = settings or ReportSettings()
    if not run_dirs:
        raise RunFolderError("no run folder given")
    runs = [load_run(p) for p in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise RunFolderError(f"run folders must have distinct names to label the rows; got {', '.join(names)}")
    out = Path(out) if out is not None else runs[0].path
    check_report_out(runs, out, overwrite)
    for run in runs:
        refuse_out_in_photos(out, run)
    out.mkdir(parents=True, exist_ok=True)
    target = RunFolder(out)  # where report.md, summary.csv and pairwise.csv go

    summary = summarize(runs)
    analysis = compare.analyse(runs)  # paired tests and intervals from the per-image scores
    summary = compare.paired_gains(compare.with_intervals(summary, analysis), analysis)
    with all_or_nothing():  # a failure half-way (a full disk) leaves the old report whole
        return _write_report(runs, out, target, summary, analysis, settings)


def _write_report(runs, out: Path, target: RunFolder, summary, analysis, settings: ReportSettings) -> Report:
    """build_report's outputs: summary.csv, pairwise.csv, the figures, report.md."""
    write_csv(target.summary, spreadsheet_frame(summary))
    write_csv(target.pairwise, spreadsheet_frame(analysis.pairwise))
    # Figures show the models and gray; the ground-truth reference rows are table-only.
    order = [r.label for r in table_rows(runs) if r.combination != TRUTH]
    palette = figures.make_palette(order)
    descriptions = {m: METRICS[m].description for m in summary.metric.unique() if m in METRICS}

    written = {}
    digits = {m: decimals(summary.loc[summary.metric == m, "mean"].tolist()) for m in summary.metric.unique()}
    values = seed_values(runs, summary)
    plotted, left_out = scored_metrics(summary)
    figures.bar_figure(
        values[values.row.isin(order) & values.metric.isin(plotted)], order, palette, out / FIGURES["scores"],
        descriptions, digits,
    )
    written["scores"] = out / FIGURES["scores"]
    logs, epoch_steps = training_logs(runs)
    problems = []
    if logs:
        figures.curves_figure(figures.curve_frame(logs), order, palette, out / FIGURES["training"], epoch_steps)
        written["training"] = out / FIGURES["training"]
    elif any(run.combinations for run in runs):  # a folder of outside colorizers alone trains nothing
        problems.append("training curves skipped: no cell has a train_log.csv")
    curves = val_curves(runs)
    improving = []
    if len(curves):
        shown = [m for m in plotted if m in set(curves.metric)]
        grays = summary[summary.combination == GRAY]  # one gray row per metric: runs on the same val photos
        gray = dict(zip(grays.metric, grays["mean"])) if not grays.metric.duplicated().any() else {}
        figures.val_curves_figure(curves, shown, order, palette, out / FIGURES["curves"], gray)
        written["curves"] = out / FIGURES["curves"]
        improving = still_improving(curves, shown)
    image_written, image_problems = image_figures(runs, order, palette, out, settings)
    written |= image_written
    problems += image_problems
    if compare.pairwise_figure(analysis, summary, out / FIGURES["pairwise"]):
        written["pairwise"] = out / FIGURES["pairwise"]

    gallery_notes = write_gallery(runs, out, target.gallery_page)
    notes = caveats(runs, summary) + problems
    text = render(runs, summary, written, notes, out, settings, left_out, analysis, improving, gallery_notes)
    atomic_write_text(target.report, text)
    for key, name in FIGURES.items():  # a figure of an earlier report that this one could not draw
        if key not in written:
            (out / name).unlink(missing_ok=True)
    return Report(target.report, written, notes)


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


def render(
    runs: list[Run], summary: pd.DataFrame, written: dict, notes: list[str], out: Path, settings: ReportSettings,
    left_out: dict[str, str] | None = None, analysis: "compare.Analysis | None" = None,
    improving: list[str] | None = None, gallery_notes: list[str] | None = None,
) -> str:
    """report.md: what was run and its caveats, the table and its reading, which
    differences are real, the cost, the figures."""
    title = " vs ".join(code(r.name) for r in runs)
    md = [f"# Colorbench report: {title}", ""]
    for run in runs:
        if len(runs) > 1:
            md += [f"### Run {code(run.name)} ([metrics.csv]({_link(run.folder.metrics, out)}))", ""]
        md += run_header(run) + [""]
    if notes:
        md += ["**Caveats**", ""] + [f"- {n}" for n in notes] + [""]
    md += results_section(summary, out, analysis, improving or [])
    md += [f"**Every val photo**, each combination's colour beside the input and the truth, sortable by any "
           f"per-image score or by the paired difference of two combinations: "
           f"[gallery.html]({_link(RunFolder(out).gallery_page, out)}) (opens from the file system; click an "
           "image to enlarge it).", ""] + [f"*{n}.*" for n in (gallery_notes or [])] + ([""] if gallery_notes else [])
    if analysis is not None:
        figure = _link(written["pairwise"], out) if "pairwise" in written else None
        md += compare.section(analysis, summary, figure) + protocol_section(runs)
    md += cost_section(runs) + figures_section(runs, written, out, settings, left_out)
    sources = ", ".join("this folder" if r.path.resolve() == out.resolve() else f"{code(_rel(r.path, out))}" for r in runs)
    md += ["---", "", f"Made by `bench report` from {sources}.", ""]
    return "\n".join(md)


def results_section(summary: pd.DataFrame, out: Path, analysis: "compare.Analysis | None",
                    improving: list[str]) -> list[str]:
    winners, standing = reading(summary, analysis.pairwise if analysis is not None else None)
    seeds = int(summary["seeds_total"].max()) if len(summary) else 0
    spread = "mean ± sample std over seeds" if seeds > 1 else "one seed"
    tested = analysis is not None and not analysis.empty
    several_sets = summary.loc[summary.combination == GRAY, "photo_set"].nunique() > 1
    return [
        "## Results", "",
        f"Val scores ({spread}); ↑ higher is better, ↓ lower is better, no arrow: descriptive (read it against "
        f"{code(TRUTH)}'s, never ranked); **bold**: best of the ranked rows and gray in the column (a row marked "
        "*not ranked* never is, and a column without a ranked row bolds nothing; the caveats say why)"
        + ("; rows are ranked only against rows scored on the same val photos" if several_sets else "") + ". "
        f"{code(GRAY)} is the input itself (ab = 0), the floor every model should clear."
        + (f" {code(TRUTH)} scores the val photos themselves: a reference, never ranked."
           if (summary.combination == TRUTH).any() else ""), "",
        markdown_table(summary), "",
        metric_legend(summary), "",
        f"The same numbers as tidy CSV: [summary.csv]({_link(RunFolder(out).summary, out)}).", "",
        "## Reading the results", "",
        " ".join(winners), "",
        *(["Each combination against gray, as gains in each metric's own direction (positive = "
           "better, so a lower ↓ metric shows as +)"
           + ("; which of them are real differences is tested below" if tested else "") + ":", ""] if standing else []),
        *(f"- {line}" for line in standing), "",
        *([f"Along training (the curve figure below; a change is said where it exceeds {IMPROVING:.0%}): "
           + " ".join(improving), ""] if improving else []),
    ]


def cost_section(runs: list[Run]) -> list[str]:
    cost, cost_notes = training_cost(runs)
    if not cost:
        return []
    devices = "; ".join(sorted({f"{r.config.get('device', '?')}, {r.config.get('precision', '?')}" for r in runs}))
    return [
        "## Cost", "",
        f"What each combination's training costs ({devices}): the median wall time of a step after "
        "warm-up, and the whole cell's training (mean over seeds; scoring not "
        "included). Compare combinations of one run, on one machine.", "",
        *cost, "",
        *(f"*{n}.*" for n in cost_notes), *([""] if cost_notes else []),
    ]


def figures_section(runs: list[Run], written: dict, out: Path, settings: ReportSettings,
                    left_out: dict[str, str] | None) -> list[str]:
    captions = {
        "scores": "Each combination's val score as a gain over the gray baseline, per metric, in the "
                  "metric's own units (right of zero = better than the input itself; the baseline's "
                  "value is under each panel)."
                  + (" Not plotted: " + "; ".join(f"{code(m)} ({why})" for m, why in (left_out or {}).items()) + "."
                     if left_out else ""),
        "training": "Training losses per step, smoothed; each term unweighted as logged, "
                    "`total` is the weighted sum the generator minimised.",
        "curves": "Each ranked metric on the val photos along training, one line per combination "
                  "(mean over seeds, band: their range; the last point is the final score of the table), "
                  "gray's value dotted. Each cell's numbers: its `curve.csv`.",
        "colorfulness": "Per-image colourfulness of each combination's val predictions against the "
                        "ground-truth photos (dotted: quartiles; dashed line: ground truth's median). Washed-out, sepia "
                        "predictions sit left of it.",
        "samples": f"Fixed val photos: grayscale input | each combination | ground truth. Each model "
                   f"ran at its training size ({', '.join(sorted({str(r.options.get('size')) for r in runs}))} px); "
                   f"its colour was upsampled onto the photo's own {settings.display_size}-px lightness, "
                   "as `bench colorize` does.",
    }
    md = ["## Figures", ""]
    for key, path in written.items():
        if key in captions:  # the pairwise matrix sits in its own section
            md += [f"![{key}]({_link(path, out)})", "", f"*{captions[key]}*", ""]
    return md
