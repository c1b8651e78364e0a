"""Which differences are real? The paired comparisons of a run's combinations, photo by
photo, as numbers: no words, no plots.

From the per-image scores ``bench run`` keeps (``bench.score.per_image``) this builds, per run:
every pair of combinations (and each against ``gray``) on every ranked metric, with the
mean paired difference, its 95 % interval and p-values (``bench.score.stats.compare``), Holm's
correction over the pairs of each metric, and the verdict; and the photo-bootstrap intervals
of each row for summary.csv. ``bench compare`` and ``bench report`` both call it; what they
say about it is ``bench.report.prose``, the matrix figure ``bench.report.plots``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations as pairs_of

import numpy as np
import pandas as pd

from bench.escape import code
from bench.report.summary import MODEL, decimals, direction, table_rows
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


def interval_rows(summary: pd.DataFrame) -> tuple[list[str], list[tuple[str, list[dict | None]]]]:
    """The interval table's numbers: the headline metrics that have photo intervals, and
    for each row but the ground truth, per metric, ``{"mean", "photo": (lo, hi) | None,
    "seed": (lo, hi) | None, "digits"}`` (None without a mean). Markdown and LaTeX print it."""
    metrics = [m for m in HEADLINE if m in set(summary.metric)
               and summary.loc[summary.metric == m, "photo_ci_low"].notna().any()]
    if not metrics:
        return [], []
    cells = summary.set_index(["row", "metric"])
    digits = {m: decimals(summary.loc[summary.metric == m, "mean"].tolist()) for m in metrics}
    rows = []
    for row in dict.fromkeys(summary.loc[summary.combination != TRUTH, "row"]):
        out = []
        for m in metrics:
            r = cells.loc[(row, m)]
            if not math.isfinite(r["mean"]):
                out.append(None)
                continue
            out.append({"mean": r["mean"], "digits": digits[m],
                        **{k: (r[f"{k}_ci_low"], r[f"{k}_ci_high"]) if math.isfinite(r[f"{k}_ci_low"]) else None
                           for k in ("photo", "seed")}})
        rows.append((row, out))
    return metrics, rows
