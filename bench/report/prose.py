"""What the report and ``bench compare`` say, in words, from numbers computed elsewhere: what
was run (the header), what limits trust in it (the caveats), the reading of the table (who
wins, by how much, where each row stands against gray), and the claims of the paired tests
(``bench.report.paired``). No statistics are computed here and nothing is drawn.
"""
from __future__ import annotations

import math

import pandas as pd

from bench.escape import cell, code
from bench.report.paired import MODELS_ONLY, REAL, UNCLEAR, Analysis, headline, interval_rows
from bench.report.summary import MIN_TIMED_STEPS, OUTSIDE, RANKED, CostRow, arrow, decimals, direction, unranked
from bench.rundir.layout import BASELINES, GRAY, TRUTH
from bench.rundir.read import Run, external_note
from bench.score import stats
from bench.score.metrics import DERIVED, METRICS, SET, derived_from
from bench.score.protocol import scoring_protocol_of
from losses import is_adversarial


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


def duration(seconds) -> str:
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
        f"{_threads(c)} · **wall time** {duration(c.get('wall_seconds'))}"
        + (f" · started {c['started']}" if c.get("started") else "") if trained else
        f"- **Device**: {c.get('device', '?')} · scored {c.get('started', '?')}",
    ]
    versions = c.get("versions", {})
    if versions:
        lines.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def cost_notes(runs: list[Run], cost: list[CostRow]) -> list[str]:
    """The caveats on the step times of ``bench.report.summary.training_cost``."""
    notes = []
    for run in runs:
        short = [c.combination for c in cost if c.run == run.name and c.timed < MIN_TIMED_STEPS]
        if short:
            notes.append((f"{code(run.name)}: " if len(runs) > 1 else "")
                         + f"step times of {', '.join(f'{code(n)}' for n in short)} rest on fewer than {MIN_TIMED_STEPS} "
                         "steps after warm-up: too few to compare costs")
    return notes


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
    tested = lead(pairs, metric, best["row"], second["row"], d) if pairs is not None else None
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
    runner-up, and whether the paired tests of ``pairs`` (``bench.report.paired.pairwise``) call
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




def format_p(p: float, alpha: float = stats.ALPHA) -> str:
    """Two significant digits, and more where rounding would land on alpha itself (a
    p-value printed as 0.05 must say on which side of it it is)."""
    if not math.isfinite(p):
        return "p n/a"
    if p < 0.001:
        return "p < 0.001"
    digits = 2
    while float(f"{p:.{digits}g}") == alpha and p != alpha and digits < 6:
        digits += 1
    return f"p = {float(f'{p:.{digits}g}'):.{max(digits - 1 - math.floor(math.log10(p)), 0)}f}"


def _digits(pairs: pd.DataFrame, metric: str, summary: pd.DataFrame | None) -> int:
    if summary is not None and (summary.metric == metric).any():
        return decimals(summary.loc[summary.metric == metric, "mean"].tolist())
    return decimals(pairs["diff"].abs().tolist())


def _signed(value: float, digits: int) -> str:
    """``value`` at ``digits`` decimals, never ``-0.00``: a difference that rounds to nothing has no side."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _oriented(r, digits: int, first: str | None = None) -> tuple[str, str, str]:
    """(first, second, "Δ [lo, hi]") with the difference read from ``first``'s side
    (default: the better one's, so Δ >= 0)."""
    flip = (first == r.b) if first is not None else r.diff < 0
    sign = -1 if flip else 1
    lo, hi = sorted((sign * r.ci_low, sign * r.ci_high))
    a, b = (r.b, r.a) if flip else (r.a, r.b)
    return a, b, f"{_signed(sign * r.diff, digits)} [{_signed(lo, digits)}, {_signed(hi, digits)}]"


def _why_not(r) -> str:
    # both after Holm over the metric's pairs: the photo test's, and the combined one that
    # decides "real" (it includes the seed test)
    return (f"{format_p(r.p_holm)} over photos after Holm; with the seeds' test, {format_p(r.p_combined)} "
            "after Holm")


def _is_gray(label: str) -> bool:
    return label == GRAY or label.startswith(f"{GRAY} · ")


def claim(r, digits: int, name=code) -> str:
    """One pair in words, the better one first, e.g. '`l1` beats `mse` on de00 by 0.200
    [0.110, 0.290], p < 0.001 after Holm'; for a difference of these trained models only,
    what the seeds lack; otherwise, that the two are not told apart. ``name`` sets a row's
    name (a code span for markdown)."""
    winner, loser, numbers = _oriented(r, digits)
    if r.verdict == REAL:
        return f"{name(winner)} beats {name(loser)} on {r.metric} by {numbers}, {format_p(r.p_combined)} after Holm"
    if r.verdict == MODELS_ONLY:  # gray is no trained model
        who = f"{name(winner)} beats" if _is_gray(winner) else f"{name(winner)}'s models beat"
        whom = name(loser) if _is_gray(loser) else f"{name(loser)}'s"
        return (f"{who} {whom} on {r.metric} photo by photo by {numbers} ({_why_not(r)}: "
                "not shown to hold across training runs)")
    if str(r.test).startswith("not tested"):
        return f"{name(winner)} and {name(loser)} are {r.test} on {r.metric} (Δ {numbers})"
    return f"{name(winner)} and {name(loser)} are not told apart on {r.metric} (Δ {numbers}, {format_p(r.p_combined)} after Holm)"


def compare_lines(pairs: pd.DataFrame, metric: str) -> list[str]:
    """``bench compare``'s account of one metric, in the report's words: a line saying what
    was tested, then each pair as a claim ("l1 beats mse on de00 by 0.20 [0.11, 0.29], p <
    0.001 after Holm"): the pairs of combinations (real differences first, largest first,
    then those of these trained models only, then the rest), then each against gray."""
    rows = pairs[pairs.metric == metric]
    if rows.empty:
        return [f"{metric}: no pairs to compare (no per-image values of it in this run)"]
    d = decimals(rows["diff"].abs().tolist() + rows["ci_high"].abs().tolist())
    seeds, photos = int(rows["seeds"].max()), int(rows["photos"].max())
    head = (f"{metric} {arrow(metric)} ({direction(metric)} is better): {photos} photos, {seeds} seed(s); "
            f"by = how much better, in the metric's own units, with its 95 % interval (paired bootstrap"
            f"{', seeds then photos' if seeds > 1 else ' of the photos'}); p: {rows['test'].iloc[0]} over photos"
            + (" and t over seeds, the larger" if seeds > 1 else "") + f", Holm-corrected over the {len(rows)} pairs")
    rank = {REAL: 0, MODELS_ONLY: 1, UNCLEAR: 2}
    against_gray = rows.b.map(_is_gray)
    order = rows.assign(_gray=against_gray, _rank=rows.verdict.map(rank).fillna(2), _size=-rows["diff"].abs())
    order = order.sort_values(["_gray", "_rank", "_size"], kind="stable")
    return [head, *(f"  {claim(r, d, name=str)}" for r in order.itertuples())]


def lead(pairs: pd.DataFrame | None, metric: str, a: str, b: str, digits: int) -> tuple[float, str] | None:
    """``a``'s paired lead over ``b`` on ``metric``: (Δ from ``a``'s side, on the photos and
    seeds both have; the verdict in words, whose Δ is that same number). None without a
    test of that pair (e.g. rows of different runs)."""
    if pairs is None or pairs.empty:
        return None
    hit = pairs[(pairs.metric == metric) & (((pairs.a == a) & (pairs.b == b)) | ((pairs.a == b) & (pairs.b == a)))]
    if hit.empty:
        return None
    r = next(hit.itertuples())
    delta = r.diff if r.a == a else -r.diff
    _, _, numbers = _oriented(r, digits, first=a)
    if r.verdict == REAL:
        return delta, f"a real difference: Δ {numbers}, {format_p(r.p_combined)} after Holm"
    if r.verdict == MODELS_ONLY:
        return delta, f"real for these trained models, not shown across seeds: Δ {numbers}, {_why_not(r)}"
    return delta, f"not told apart from noise: Δ {numbers}, {format_p(r.p_combined)} after Holm"


def metric_paragraph(pairs: pd.DataFrame, metric: str, digits: int, gray_label: str) -> str:
    """The claims of one metric: the real differences between combinations (largest
    first), those of these trained models only, the pairs not told apart, and where each
    combination stands against the input itself."""
    rows = pairs[pairs.metric == metric]
    models = rows[rows.b != gray_label]
    vs_gray = rows[rows.b == gray_label]
    parts = []
    for v in (REAL, MODELS_ONLY):
        hits = models[models.verdict == v]
        hits = hits.loc[hits["diff"].abs().sort_values(ascending=False).index]
        if len(hits):
            parts.append("; ".join(claim(r, digits) for r in hits.itertuples()) + ".")
    unclear = models[models.verdict == UNCLEAR]
    if len(unclear):
        listed = ", ".join(
            f"{code(a)} vs {code(b)} (Δ {numbers}, {format_p(r.p_combined)})"
            for r in unclear.itertuples() for a, b, numbers in [_oriented(r, digits)]
        )
        parts.append(f"Not told apart: {listed}.")
    if len(vs_gray):
        def each(frame):
            return ", ".join(f"{code(r.a)} ({_oriented(r, digits, first=r.a)[2]}, {format_p(r.p_combined)})"
                             for r in frame.itertuples())
        said = []
        for label, frame in (
            ("beat{s} the input itself", vs_gray[(vs_gray.verdict == REAL) & (vs_gray["diff"] > 0)]),
            ("{are} worse than it", vs_gray[(vs_gray.verdict == REAL) & (vs_gray["diff"] < 0)]),
            ("beat{s} it photo by photo but not shown across seeds",
             vs_gray[(vs_gray.verdict == MODELS_ONLY) & (vs_gray["diff"] > 0)]),
            ("{are} worse photo by photo but not shown across seeds",
             vs_gray[(vs_gray.verdict == MODELS_ONLY) & (vs_gray["diff"] < 0)]),
            ("cannot be told from it", vs_gray[vs_gray.verdict == UNCLEAR]),
        ):
            if len(frame):
                one = len(frame) == 1
                said.append(f"{each(frame)} " + label.format(s="s" if one else "", are="is" if one else "are"))
        parts.append(f"Against {code(gray_label)} (Δ over it): " + "; ".join(said) + ".")
    return f"**{metric}** {arrow(metric)}: " + " ".join(parts)


def section(analysis: Analysis, summary: pd.DataFrame, figures: list[str] = ()) -> list[str]:
    """The report's "Which differences are real?" section (markdown lines); ``figures``: the
    lines of the figures placed in it (``bench.report.figures``, ``where="differences"``)."""
    md = ["## Which differences are real?", ""]
    pairs = analysis.pairwise
    if pairs.empty:
        why = "; ".join(analysis.problems) or "no metric has per-image scores in two rows"
        return md + [f"No paired comparisons: {why}.", ""]
    seeds = int(pairs["seeds"].max())
    per_run = pairs.groupby("run", sort=False)["photos"].max()
    # rows scored on part of the photos (--allow-missing): paired on the photos both have
    partial = list(dict.fromkeys(summary.loc[~summary.combination.isin([GRAY, TRUTH]) & ~summary.photo_set.isin(
        summary.loc[summary.combination == GRAY, "photo_set"]), "row"])) if summary is not None and "photo_set" in summary else []
    but = (f" (except {_and([code(r) for r in partial])}, scored on part of them: "
           f"{'its pairs are' if len(partial) == 1 else 'their pairs are'} tested on the photos both have)") if partial else ""
    if len(per_run) == 1:
        scored = f"Every model was scored on the same {int(per_run.iloc[0])} val photos{but}, so each pair of combinations"
    else:  # runs may have other photos: pairs are formed within a run only
        scored = ("Within each run every model was scored on the same val photos ("
                  + ", ".join(f"{code(run)}: {int(n)}" for run, n in per_run.items())
                  + f"){but}, so each pair of combinations of a run")
    resampled = [m.name for m in METRICS.values() if m.kind in (SET, DERIVED) or m.pool_weight is not None]
    md += [
        scored + " is compared photo by photo. Δ is the mean paired difference in the metric's own direction (positive: the first named is better), "
        f"with a 95 % interval from a paired bootstrap ({stats.N_BOOT} resamples"
        + ("; seeds resampled first, then photos" if seeds > 1 else "; photos resampled") + "). "
        "p: Wilcoxon signed-rank test on the per-photo differences"
        + (" of the seed means, together with a t-test over the seeds' differences (the larger p counts)" if seeds > 1 else "")
        + f"; {', '.join(resampled)} use a z-test with the bootstrap's standard error (photos "
        f"resampled); a pair with fewer than {stats.MIN_PHOTOS} distinct photos is not tested. p-values are Holm-corrected "
        "over all pairs of a metric. A difference is called **real** when p < 0.05 after Holm and the interval "
        "excludes 0."
        + (" When only the photo test says so, the difference holds photo by photo for these trained models, but "
           "the seeds do not show that it holds for the losses (*not shown across seeds*)." if seeds > 1 else ""),
        "",
    ]
    if seeds <= 1:
        md += ["With one seed, a real difference is one between these trained models on photos like these; "
               "whether it holds for the losses themselves needs several seeds (`--seeds 0,1,2`).", ""]
    elif seeds == 2:
        md += ["With two seeds the seed test has one degree of freedom: only differences of nearly the same size "
               "in both seeds pass it. Three or more seeds (`--seeds 0,1,2`) make it usable.", ""]
    for s in analysis.scores:
        own = pairs[pairs.run == s.run.name]
        if own.empty:
            continue
        if len(analysis.scores) > 1:
            md += [f"### Run {code(s.run.name)}", ""]
        gray_label = s.labels.get(GRAY, GRAY)
        for metric in headline(own):
            md += [metric_paragraph(own, metric, _digits(own, metric, summary), gray_label), ""]
    md += list(figures) + interval_table(summary)
    others = sorted(set(pairs.metric) - set(headline(pairs)))
    md += [f"All pairs of every metric{' (also ' + ', '.join(f'{code(m)}' for m in others) + ')' if others else ''}, "
           "with each p-value before and after Holm: [pairwise.csv](pairwise.csv); each row's intervals: "
           "`seed_ci_*` and `photo_ci_*` in summary.csv.", ""]
    if analysis.problems:
        md += [f"- {p}" for p in analysis.problems] + [""]
    return md


def interval_table(summary: pd.DataFrame) -> list[str]:
    """Headline metrics' 95 % intervals per row: over photos (bootstrap) and over seeds (t)."""
    metrics, rows = interval_rows(summary)
    if not metrics:
        return []
    lines = [
        "95 % intervals of each row's mean: over photos (bootstrap)"
        + ("; after `·`, over seeds (t)" if summary["seeds"].max() > 1 else "") + ".",
        "",
        "| combination | " + " | ".join(f"{m} {arrow(m)}" for m in metrics) + " |",
        "| --- |" + " ---: |" * len(metrics),
    ]
    for row, cells in rows:
        lines.append("| " + " | ".join([cell(row), *(interval_text(c) for c in cells)]) + " |")
    return lines + [""]


def interval_text(c: dict | None, between: str = " · ") -> str:
    """One cell of the interval table: ``mean [photo interval] · [seed interval]``."""
    if c is None:
        return "—"
    d = c["digits"]
    text = f"{c['mean']:.{d}f}"
    for key, sep in (("photo", " "), ("seed", between)):
        if c[key] is not None:
            text += f"{sep}[{c[key][0]:.{d}f}, {c[key][1]:.{d}f}]"
    return text
