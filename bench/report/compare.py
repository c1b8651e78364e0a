"""Which differences are real? Paired comparisons of a run's combinations, photo by photo.

From the per-image scores ``bench run`` keeps (``bench.score.per_image``) this builds, per run:
every pair of combinations (and each against ``gray``) on every ranked metric, with the
mean paired difference, its 95 % interval and p-values (``bench.score.stats.compare``), Holm's
correction over the pairs of each metric, and the verdict; the photo-bootstrap intervals of
each row for summary.csv; and the report's section and matrix figure. ``bench compare`` and
``bench report`` both call it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations as pairs_of

import numpy as np
import pandas as pd

from bench.escape import cell, code
from bench.report import figures
from bench.report.summary import MODEL, arrow, decimals, direction, table_rows
from bench.rundir.layout import GRAY, TRUTH
from bench.rundir.read import Run
from bench.score import stats
from bench.score.metrics import DERIVED, METRICS, PER_IMAGE, SET
from bench.score.per_image import PerImage, read_per_image
from bench.score.protocol import scoring_protocol_of

# The report's matrices and claims; lpips joins when the run has its values.
HEADLINE = ("psnr", "de00", "delta_cf", "lpips")


PAIRWISE_COLUMNS = [
    "run", "metric", "direction", "a", "b", "diff", "ci_low", "ci_high", "p", "p_holm", "p_seeds", "p_combined",
    "significant", "verdict", "better", "test", "photos", "seeds", "resamples",
]


# The verdicts of a pair: real (photos, seeds and interval agree), these models only (photo
# by photo these trained models differ, but the seeds do not show it holds for the losses),
# or not told apart.
REAL, MODELS_ONLY, UNCLEAR = "real", "these models only", "not told apart"


INTERVAL_COLUMNS = ["seed_ci_low", "seed_ci_high", "photo_ci_low", "photo_ci_high"]


SIGN = {"higher": 1.0, "lower": -1.0}


@dataclass
class RunScores:
    """One run's per-image scores, arranged for ``bench.score.stats``: every value of
    (combination, seed, metric) as an array over ``images`` (the val photos, in the order
    gray's scores list them)."""

    run: Run
    data: PerImage
    labels: dict[str, str]  # combination -> the table's row label
    images: list[str] = field(default_factory=list)
    values: dict[tuple[str, object, str], np.ndarray] = field(default_factory=dict)
    replicates: dict[tuple[str, object, str], np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def combinations(self) -> list[str]:
        """Gray first, then the combinations with per-image scores, in ``--losses`` order."""
        have = {c for c, _, _ in self.values}
        return [c for c in [GRAY, *self.run.row_names] if c in have]

    def seeds(self, combination: str, metric: str) -> list[int]:
        if self.run.seedless(combination):
            return list(self.run.seeds)  # seed-independent (gray, an outside colorizer): paired with any seed
        return [s for s in self.run.seeds if self._has(combination, s, metric)]

    def _sources(self, combination: str, seed, metric: str) -> list:
        kind = _kind(metric)
        return [self.values.get((combination, seed, source))
                for source in (METRICS[metric].needs if kind == DERIVED else (metric,))]

    def photos(self, combination: str, metric: str) -> np.ndarray:
        """Which val photos have a (finite) value of the metric for the row, every seed of it:
        all but those an outside colorizer scored without (``--allow-missing``) and, for a
        perfect prediction, infinite PSNRs."""
        mask = np.ones(len(self.images), bool)
        for seed in {self._seed_key(combination, s) for s in self.run.seeds}:
            for v in self._sources(combination, seed, metric):
                if v is not None:
                    mask &= np.isfinite(v)
        return mask

    def _has(self, combination: str, seed, metric: str, photos: np.ndarray | None = None) -> bool:
        kind = _kind(metric)
        if kind == SET:  # recomputed from replicates of the whole set: all photos or none
            return (photos is None or photos.all()) and (combination, seed, metric) in self.replicates and \
                math.isfinite(self._observed(combination, seed, metric))
        values = self._sources(combination, seed, metric)
        return all(v is not None and bool(np.isfinite(v if photos is None else v[photos]).all()) for v in values)

    def _seed_key(self, combination: str, seed):
        return None if self.run.seedless(combination) else seed

    def _observed(self, combination: str, seed, metric: str) -> float:
        m = self.run.metrics
        rows = m[(m.combination == combination) & (m.metric == metric)]
        if not self.run.seedless(combination):
            rows = rows[rows.seed == seed]
        return float(rows["value"].iloc[0]) if len(rows) and pd.notna(rows["value"].iloc[0]) else math.nan

    def sample(self, combination: str, metric: str, seeds: list[int], photos: np.ndarray | None = None
               ) -> stats.Sample | None:
        """The ``stats.Sample`` of a combination's metric over ``seeds`` (and ``photos``, a mask
        of the val photos: those two rows both have); None without values."""
        if not seeds or not all(self._has(combination, self._seed_key(combination, s), metric, photos) for s in seeds):
            return None
        if photos is not None and not photos.all():
            return self._subset(combination, metric, seeds, photos)
        keys = [self._seed_key(combination, s) for s in seeds]
        kind = _kind(metric)
        if kind == SET:
            found = [self.replicates[(combination, k, metric)] for k in keys]
            reps = np.stack([r[: min(map(len, found))] for r in found])  # a resumed run may hold fewer
            observed = np.array([self._observed(combination, k, metric) for k in keys])
            return stats.Sample(np.zeros((len(keys), len(self.images))), replicates=reps, observed=observed)
        if kind == DERIVED:  # recomputed on each resample from the per-image values it needs
            m = METRICS[metric]
            truth = {n: self.values[(TRUTH, None, n)] for n in m.needs if (TRUTH, None, n) in self.values}
            if any(n not in truth for n in _truth_needed(metric)):
                return None
            pred = {n: np.stack([self.values[(combination, k, n)] for k in keys]) for n in m.needs}
            protocol = scoring_protocol_of(self.run.config)
            return stats.Sample(pred[m.needs[0]], statistic=lambda counts: m.resampled(pred, truth, counts, protocol))
        weights = self.values.get((TRUTH, None, f"{metric}_weight"))
        if METRICS.get(metric) is not None and METRICS[metric].needs and weights is None:
            return None
        return stats.Sample(np.stack([self.values[(combination, k, metric)] for k in keys]), weights=weights)

    def _subset(self, combination: str, metric: str, seeds: list[int], photos: np.ndarray) -> stats.Sample | None:
        """``sample`` on the photos of ``photos`` alone, as a ``RunScores`` of those photos."""
        part = RunScores(self.run, self.data, self.labels, [i for i, keep in zip(self.images, photos) if keep])
        part.values = {key: v[photos] for key, v in self.values.items()}
        return part.sample(combination, metric, seeds)


def load_scores(run: Run, labels: dict[str, str] | None = None) -> RunScores:
    data = read_per_image(run)
    scores = RunScores(run, data, labels or {c: c for c in [GRAY, *run.row_names]})
    frame = data.frame
    if frame.empty:
        scores.problems.append(f"{code(run.name)}: no per-image scores (the run was made before Colorbench kept them), "
                               "so no paired comparisons")
        return scores
    base = frame[frame.combination == GRAY]
    scores.images = list(dict.fromkeys((base if len(base) else frame)["image"]))
    position = {name: i for i, name in enumerate(scores.images)}
    for (combination, seed, metric), group in frame.groupby(["combination", "seed", "metric"], dropna=False, sort=False):
        partial = combination in run.external_names and set(group["image"]) < set(position)  # --allow-missing
        if not partial and (set(group["image"]) != set(position) or len(group) != len(position)):
            scores.problems.append(f"{code(combination)} seed {seed}: its per-image scores list other val photos; left out")
            continue
        v = np.full(len(position), np.nan)
        v[group["image"].map(position).to_numpy()] = group["value"].to_numpy(dtype=float)
        key_seed = None if pd.isna(seed) else int(seed)
        scores.values[(combination, key_seed, metric)] = v
    for (combination, seed, metric), group in data.replicates.groupby(["combination", "seed", "metric"], dropna=False):
        scores.replicates[(combination, None if pd.isna(seed) else int(seed), metric)] = (
            group.sort_values("replicate")["value"].to_numpy(dtype=float))
    for (combination, seed), why in data.missing.items():
        scores.problems.append(f"{code(scores.labels.get(combination, combination))} seed {seed} has no per-image scores "
                               f"({why}): left out of the paired comparisons")
    return scores


def ranked_metrics(scores: RunScores) -> list[str]:
    """The metrics a pair can be compared on: ranked ones that have per-image data (or,
    for FID/KID, replicates), in the registry's order."""
    have = {m for _, _, m in scores.values} | {m for _, _, m in scores.replicates}
    have |= {name for name, m in METRICS.items() if m.kind == DERIVED and all(n in have for n in m.needs)
             and all((TRUTH, None, n) in scores.values for n in _truth_needed(name))}
    out = [m for m in METRICS if m in have and direction(m) in SIGN]
    return [m for m in out if any(scores.seeds(c, m) for c in scores.combinations if c != GRAY)]


def descriptive_metrics(scores: RunScores) -> list[str]:
    """The per-image metrics read against the photos' own value, never ranked (``cf``)."""
    have = {m for _, _, m in scores.values}
    return [m for m in METRICS if m in have and direction(m) == "descriptive"]


def _truth_needed(metric: str) -> list[str]:
    """The photos' own per-image values a derived metric reads: those of the descriptive
    metrics it needs (the Scorer keeps the photos' values of those alone)."""
    return [n for n in METRICS[metric].needs if direction(n) == "descriptive"]


def _kind(metric: str) -> str:
    """A metric's kind; one the registry does not know (a column of an older run) counts
    as per image, as its per-image values are what is there."""
    return METRICS[metric].kind if metric in METRICS else PER_IMAGE


def distinct_photos(scores: RunScores) -> int | None:
    """How many of the run's val photos differ in their pixels (copies count once), when
    config.json knows (runs since it recorded the photos' digests)."""
    data = scores.run.config.get("data", {})
    if isinstance(data.get("distinct_val_images"), int):
        return data["distinct_val_images"]
    files = (data.get("files") or {}).get("val")
    return len(set(files.values())) if isinstance(files, dict) and files else None


def pairwise(scores: RunScores, metrics: list[str] | None = None, n_boot: int = stats.N_BOOT,
             seed: int = stats.BOOT_SEED) -> pd.DataFrame:
    """Every pair of combinations, and each against gray, on every metric: ``PAIRWISE_COLUMNS``.

    ``a`` comes before ``b`` in the table's order (gray is always ``b``); ``diff`` is ``a``
    minus ``b`` in the metric's direction (positive: ``a`` better). Seeds are paired by
    number, using the seeds both have. Holm's correction runs over all pairs of a metric.
    """
    metrics = metrics if metrics is not None else ranked_metrics(scores)
    models = [c for c in scores.combinations if c != GRAY]
    order = models + ([GRAY] if GRAY in scores.combinations else [])
    n_distinct = distinct_photos(scores)
    records = []
    for metric in metrics:
        d = direction(metric)
        if d not in SIGN:
            continue  # descriptive (cf) or unknown: nothing to rank
        family = []
        for a, b in pairs_of(order, 2):
            seeds = [s for s in scores.seeds(a, metric) if s in scores.seeds(b, metric)]
            photos = scores.photos(a, metric) & scores.photos(b, metric)  # both scored (--allow-missing)
            photos = None if photos.all() else photos
            if photos is not None and photos.sum() < 2:
                continue
            sa, sb = scores.sample(a, metric, seeds, photos), scores.sample(b, metric, seeds, photos)
            if sa is None or sb is None:
                continue
            c = stats.compare(sa, sb, SIGN[d], n_boot, seed, n_distinct=n_distinct if photos is None else None)
            family.append({
                "run": scores.run.name, "metric": metric, "direction": d,
                "a": scores.labels.get(a, a), "b": scores.labels.get(b, b),
                "diff": c.diff, "ci_low": c.ci.low, "ci_high": c.ci.high, "p": c.p, "p_seeds": c.p_seeds,
                "test": c.test, "photos": c.n_photos, "seeds": c.n_seeds, "resamples": c.n_boot,
            })
        if not family:
            continue
        # Holm over the pairs of the metric: of the photo test alone, and of the combined
        # (intersection-union) p-value of photos and seeds that decides "real"
        p_holm = stats.holm([r["p"] for r in family])
        p_combined = stats.holm([stats.combined_p(r["p"], r["p_seeds"]) for r in family])
        for r, ph, pc in zip(family, p_holm, p_combined):
            real = stats.is_real(pc, stats.Interval(r["ci_low"], r["ci_high"]))
            models_only = not real and r["seeds"] > 1 and ph < stats.ALPHA
            r.update(p_holm=ph, p_combined=pc, significant=real,
                     verdict=REAL if real else (MODELS_ONLY if models_only else UNCLEAR))
            r["better"] = (r["a"] if r["diff"] > 0 else r["b"]) if r["verdict"] != UNCLEAR else ""
        records += family
    return pd.DataFrame.from_records(records, columns=PAIRWISE_COLUMNS)


def photo_intervals(scores: RunScores, metrics: list[str] | None = None, n_boot: int = stats.N_BOOT,
                    seed: int = stats.BOOT_SEED) -> pd.DataFrame:
    """Each row's photo-bootstrap interval (seeds held fixed): run, combination, metric,
    photo_ci_low, photo_ci_high. ``cf`` included (descriptive, but its interval still says
    how precisely the photos pin it), and the ground truth's own ``cf``."""
    metrics = metrics if metrics is not None else [*ranked_metrics(scores), *descriptive_metrics(scores)]
    records = []
    for combination in [*scores.combinations, TRUTH]:
        for metric in metrics:
            if combination == TRUTH:
                v = scores.values.get((TRUTH, None, metric)) if direction(metric) == "descriptive" else None
                sample = stats.Sample(v[None]) if v is not None else None
            else:
                photos = scores.photos(combination, metric)
                if photos.sum() < 2:  # nothing to resample (a perfect prediction's PSNR is infinite everywhere)
                    continue
                sample = scores.sample(combination, metric, [scores.run.seeds[0]] if scores.run.seedless(combination)
                                       else scores.seeds(combination, metric), photos if not photos.all() else None)
            if sample is None:
                continue
            ci = stats.photo_ci(sample, n_boot, seed)
            records.append({"run": scores.run.name, "combination": combination, "metric": metric,
                            "photo_ci_low": ci.low, "photo_ci_high": ci.high})
    return pd.DataFrame.from_records(records, columns=["run", "combination", "metric", "photo_ci_low", "photo_ci_high"])


@dataclass
class Analysis:
    """Everything the report needs: one ``RunScores`` per run, the pairwise table of all
    runs (pairs within a run), the photo intervals and any problems to state."""

    scores: list[RunScores]
    pairwise: pd.DataFrame
    intervals: pd.DataFrame
    problems: list[str]

    @property
    def empty(self) -> bool:
        return self.pairwise.empty


def analyse(runs: list[Run], n_boot: int = stats.N_BOOT, seed: int = stats.BOOT_SEED) -> Analysis:
    labels = {}
    for row in table_rows(runs):
        labels.setdefault(row.run, {})[row.combination] = row.label
    scores = []
    for run in runs:
        own = labels.get(run.name, {})
        own.setdefault(GRAY, GRAY if len(runs) == 1 else f"{GRAY} · {run.name}")
        scores.append(load_scores(run, own))
    tables = [pairwise(s, None, n_boot, seed) for s in scores]
    intervals = [photo_intervals(s, None, n_boot, seed) for s in scores]
    nonempty = [t for t in tables if len(t)]
    return Analysis(
        scores,
        pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(columns=PAIRWISE_COLUMNS),
        pd.concat(intervals, ignore_index=True),
        [p for s in scores for p in s.problems],
    )


def with_intervals(summary: pd.DataFrame, analysis: Analysis | None) -> pd.DataFrame:
    """summary.csv with four columns appended: the seed t interval (several seeds, models
    only) and the photo-bootstrap interval of each row's mean."""
    out = summary.copy()
    seed_ci = [
        stats.t_interval_from(r.mean, r.std, int(r.seeds)) if r.kind == MODEL else stats.NAN_INTERVAL
        for r in summary.itertuples()
    ]
    out["seed_ci_low"] = [c.low for c in seed_ci]
    out["seed_ci_high"] = [c.high for c in seed_ci]
    out["photo_ci_low"], out["photo_ci_high"] = np.nan, np.nan
    if analysis is not None and len(analysis.intervals):
        table = analysis.intervals.set_index(["run", "combination", "metric"])
        for i, r in summary.iterrows():
            key = (r["run"], r["combination"], r["metric"])
            if key in table.index:
                out.loc[i, ["photo_ci_low", "photo_ci_high"]] = table.loc[key, ["photo_ci_low", "photo_ci_high"]].to_numpy(float)
    return out


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


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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


def claim(r, digits: int) -> str:
    """One pair in words, the better one first, e.g. '`l1` beats `mse` on de00 by 0.200
    [0.110, 0.290], p < 0.001 after Holm'; for a difference of these trained models only,
    what the seeds lack; otherwise, that the two are not told apart."""
    winner, loser, numbers = _oriented(r, digits)
    if r.verdict == REAL:
        return f"{code(winner)} beats {code(loser)} on {r.metric} by {numbers}, {format_p(r.p_combined)} after Holm"
    if r.verdict == MODELS_ONLY:
        return (f"{code(winner)}'s models beat {code(loser)}'s on {r.metric} photo by photo by {numbers} ({_why_not(r)}: "
                "not shown to hold across training runs)")
    if str(r.test).startswith("not tested"):
        return f"{code(winner)} and {code(loser)} are {r.test} on {r.metric} (Δ {numbers})"
    return f"{code(winner)} and {code(loser)} are not told apart on {r.metric} (Δ {numbers}, {format_p(r.p_combined)} after Holm)"


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


def verdict(pairs: pd.DataFrame | None, metric: str, a: str, b: str, digits: int) -> str | None:
    """For the reading paragraph: is ``a``'s lead over ``b`` on ``metric`` real? None
    without a test of that pair (e.g. rows of different runs)."""
    found = lead(pairs, metric, a, b, digits)
    return found[1] if found else None


def paired_gains(summary: pd.DataFrame, analysis: "Analysis | None") -> pd.DataFrame:
    """summary with ``vs_gray`` of each row scored on other photos than gray's (``--allow-missing``)
    taken from its paired test against gray, on the photos both have: a gain over gray's
    mean of all the photos would compare other photos."""
    out = summary.copy()
    if analysis is None or analysis.pairwise.empty:
        return out
    gray_sets = set(summary.loc[summary.combination == GRAY, "photo_set"])
    pairs = analysis.pairwise
    labels = {s.run.name: s.labels.get(GRAY, GRAY) for s in analysis.scores}
    for i, r in summary.iterrows():
        if r["combination"] in (GRAY, TRUTH) or r["photo_set"] in gray_sets or r["run"] not in labels:
            continue
        hit = pairs[(pairs.run == r["run"]) & (pairs.metric == r["metric"]) & (pairs.a == r["row"])
                    & (pairs.b == labels[r["run"]])]
        if len(hit):
            out.loc[i, "vs_gray"] = float(hit["diff"].iloc[0])
    return out


def headline(pairs: pd.DataFrame) -> list[str]:
    have = set(pairs.metric)
    return [m for m in HEADLINE if m in have]


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


def section(analysis: Analysis, summary: pd.DataFrame, figure: str | None) -> list[str]:
    """The report's "Which differences are real?" section (markdown lines)."""
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
    but = (f" (except {_and_list([code(r) for r in partial])}, scored on part of them: "
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
    if figure:
        md += [f"![pairwise]({figure})", "",
               "*Δ of the row's combination over the column's, in each metric's direction (blue: the row is better). "
               "Coloured and starred: a real difference (p < 0.05 after Holm, interval excluding 0)"
               + ("; pale and hatched: these trained models only (photo test alone)" if seeds > 1 else "")
               + "; grey: not told apart from noise.*", ""]
    md += interval_table(summary)
    others = sorted(set(pairs.metric) - set(headline(pairs)))
    md += [f"All pairs of every metric{' (also ' + ', '.join(f'{code(m)}' for m in others) + ')' if others else ''}, "
           "with each p-value before and after Holm: [pairwise.csv](pairwise.csv); each row's intervals: "
           "`seed_ci_*` and `photo_ci_*` in summary.csv.", ""]
    if analysis.problems:
        md += [f"- {p}" for p in analysis.problems] + [""]
    return md


def interval_table(summary: pd.DataFrame) -> list[str]:
    """Headline metrics' 95 % intervals per row: over photos (bootstrap) and over seeds (t)."""
    metrics = [m for m in HEADLINE if m in set(summary.metric) and summary.loc[summary.metric == m, "photo_ci_low"].notna().any()]
    if not metrics:
        return []
    several = summary["seeds"].max() > 1
    cells = summary.set_index(["row", "metric"])
    lines = [
        "95 % intervals of each row's mean: over photos (bootstrap)" + ("; after `·`, over seeds (t)" if several else "") + ".",
        "",
        "| combination | " + " | ".join(f"{m} {arrow(m)}" for m in metrics) + " |",
        "| --- |" + " ---: |" * len(metrics),
    ]
    for row in dict.fromkeys(summary.loc[summary.combination != TRUTH, "row"]):
        out = [cell(row)]
        for m in metrics:
            r = cells.loc[(row, m)]
            d = decimals(summary.loc[summary.metric == m, "mean"].tolist())
            if not math.isfinite(r["mean"]):
                out.append("—")
                continue
            text = f"{r['mean']:.{d}f}"
            if math.isfinite(r["photo_ci_low"]):
                text += f" [{r['photo_ci_low']:.{d}f}, {r['photo_ci_high']:.{d}f}]"
            if math.isfinite(r["seed_ci_low"]):
                text += f" · [{r['seed_ci_low']:.{d}f}, {r['seed_ci_high']:.{d}f}]"
            out.append(text)
        lines.append("| " + " | ".join(out) + " |")
    return lines + [""]


def terminal_table(pairs: pd.DataFrame, metric: str) -> str:
    """``bench compare``'s table of one metric."""
    rows = pairs[pairs.metric == metric]
    if rows.empty:
        return f"{metric}: no pairs to compare (no per-image values of it in this run)"
    d = decimals(rows["diff"].abs().tolist() + rows["ci_high"].abs().tolist())
    seeds, photos = int(rows["seeds"].max()), int(rows["photos"].max())
    head = (f"{metric} {arrow(metric)} ({direction(metric)} is better): {photos} photos, {seeds} seed(s); "
            f"Δ = a better than b by (in the metric's direction), 95 % CI by paired bootstrap"
            f"{' (seeds, then photos)' if seeds > 1 else ' (photos)'}; "
            f"p Holm-corrected over the {len(rows)} pairs")
    def short(p):
        return format_p(p).removeprefix("p ").removeprefix("= ")

    table = pd.DataFrame({
        "a": rows["a"], "b": rows["b"],
        "Δ": rows["diff"].map(lambda v: f"{v:+.{d}f}"),
        "95% CI": [f"[{lo:+.{d}f}, {hi:+.{d}f}]" for lo, hi in zip(rows["ci_low"], rows["ci_high"])],
        f"p photos ({rows['test'].iloc[0]}, Holm)": rows["p_holm"].map(short),
    })
    if seeds > 1:
        table["p seeds (t)"] = rows["p_seeds"].map(short)
        table["p both (Holm)"] = rows["p_combined"].map(short)
    table["verdict"] = rows["verdict"]
    return head + "\n" + table.to_string(index=False)


def difference_matrix(pairs: pd.DataFrame, order: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Δ, verdict) square frames over ``order``: cell (row, column) is the row's
    combination over the column's, in the metric's direction; the diagonal is empty."""
    delta = pd.DataFrame(np.nan, index=order, columns=order)
    verdicts = pd.DataFrame(UNCLEAR, index=order, columns=order)
    for r in pairs.itertuples():
        if r.a in delta.index and r.b in delta.index:
            delta.loc[r.a, r.b], delta.loc[r.b, r.a] = r.diff, -r.diff
            verdicts.loc[r.a, r.b] = verdicts.loc[r.b, r.a] = r.verdict
    return delta, verdicts


DIRECTION_WORDS = {"higher": "higher is better", "lower": "lower is better"}


def _draw_matrix(ax, rows: pd.DataFrame, order: list[str], digits: int, title: str) -> None:
    """One metric's Δ matrix: real differences in colour and starred, "these trained models
    only" pale and hatched, the rest grey."""
    import seaborn as sns
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    delta, verdicts = difference_matrix(rows, order)
    real, pale = (verdicts == REAL).to_numpy(), (verdicts == MODELS_ONLY).to_numpy()
    span = float(np.nanmax(np.abs(delta.to_numpy()))) if delta.notna().any().any() else 1.0
    ticks = [figures._wrap(r, 14) for r in order]
    # grey first (everything), then the real differences in colour on top
    sns.heatmap(delta.isna().astype(float) * 0, mask=delta.isna().to_numpy() | real | pale, cmap=ListedColormap(["#ececec"]),
                cbar=False, ax=ax, linewidths=1, linecolor="white", xticklabels=ticks, yticklabels=ticks)
    sns.heatmap(delta, mask=~real, cmap="RdBu", vmin=-span, vmax=span, center=0, ax=ax,
                linewidths=1, linecolor="white", cbar_kws={"shrink": 0.8, "label": "Δ row over column"},
                xticklabels=ticks, yticklabels=ticks)
    if pale.any():
        sns.heatmap(delta, mask=~pale, cmap="RdBu", vmin=-span, vmax=span, center=0, ax=ax, alpha=0.45,
                    linewidths=1, linecolor="white", cbar=False, xticklabels=ticks, yticklabels=ticks)
        for i, j in zip(*np.nonzero(pale)):  # hatched: these trained models only
            ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="///", edgecolor="white", linewidth=0))
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            v = delta.loc[a, b]
            if not math.isfinite(v):
                continue
            strong = verdicts.loc[a, b] == REAL
            dark = strong and abs(v) > 0.6 * span
            boxed = verdicts.loc[a, b] == MODELS_ONLY  # readable over the hatching
            ax.text(j + 0.5, i + 0.5, f"{v:+.{digits}f}" + ("*" if strong else ""), ha="center", va="center",
                    fontsize=8, color="white" if dark else ("0.1" if strong or boxed else "0.45"),
                    fontweight="bold" if strong else "normal", zorder=5,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85) if boxed else None)
    ax.set_title(title, fontsize=10)
    ax.grid(False)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8.5)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8.5)


def pairwise_figure(analysis: Analysis, summary: pd.DataFrame | None, path) -> bool:
    """One matrix per run and headline metric; False (nothing written) without pairs."""
    panels = []
    for s in analysis.scores:
        own = analysis.pairwise[analysis.pairwise.run == s.run.name]
        # the models in table order, gray last: its column reads "against the input itself"
        order = [s.labels.get(c, c) for c in [*s.combinations[1:], s.combinations[0]]] if s.combinations[:1] == [GRAY] \
            else [s.labels.get(c, c) for c in s.combinations]
        for metric in headline(own):
            panels.append((s.run.name, metric, own[own.metric == metric], order))
    if not panels:
        return False
    n = max(len(p[3]) for p in panels)
    with figures._style():
        fig, axes = figures._grid(len(panels), 3 if n <= 5 else 2, 0.75 * n + 2.2, 0.62 * n + 1.4)
        for ax, (run, metric, rows, order) in zip(axes, panels):
            title = f"{metric} {arrow(metric)} ({DIRECTION_WORDS[direction(metric)]})"
            _draw_matrix(ax, rows, order, _digits(rows, metric, summary),
                         title + (f" · {run}" if len(analysis.scores) > 1 else ""))
        seeds = int(analysis.pairwise["seeds"].max())
        fig.suptitle("Which differences are real? Δ of row over column, in the metric's direction\n"
                     "* real: p < 0.05 after Holm and 95 % CI excluding 0"
                     + ("; hatched: these trained models only (not shown across seeds)" if seeds > 1 else "")
                     + f"; grey: not told apart ({seeds} seed{'s' if seeds > 1 else ''}, "
                     f"{int(analysis.pairwise['photos'].max())} photos)", fontsize=10.5)
        figures._save(fig, path)
    return True
