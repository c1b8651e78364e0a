"""Confidence intervals and paired tests over per-image scores: pure numpy/scipy functions.

Every model is scored on the same val photos, so two combinations can be compared photo by
photo, which separates far smaller differences from noise than seeds alone. The data of one
combination and one metric is a ``Sample``: an (S, N) array of S seeds x N val photos, with
the photos in the same order for every combination (and seeds paired by their number: a
seed starts every combination from the same weights and batches).

* ``photo_ci``: the interval of one combination's set value when the val photos are
  resampled (seeds held fixed): how far the number could move on another draw of photos.
* ``t_interval``: the interval over seeds, from the per-seed values (training noise).
* ``compare``: the mean paired difference of two combinations with a bootstrap interval
  (photos resampled; with several seeds, seeds resampled first, then photos), a p-value
  over photos (Wilcoxon signed-rank on per-photo differences of the seed means, or a
  z-test with the bootstrap's standard error for set metrics) and, with several seeds, one
  over seeds (t-test of the per-seed differences); ``holm`` adjusts a family of p-values,
  ``significant`` says whether all of them agree that a difference is real.

Resampling is seeded (``BOOT_SEED``) and vectorised: a resample is a row of photo counts,
and every statistic is a matrix product over those rows, so the same run always gives the
same intervals and 2000 resamples of 242 photos take milliseconds.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats as sps

LEVEL = 0.95


ALPHA = 0.05


N_BOOT = 2000


# FID and KID are recomputed from the Inception features on each resample, at scoring time
# while the features are in memory (a few ms each): fewer resamples than the plain metrics.
N_BOOT_SET = 200


BOOT_SEED = 0


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes(self, value: float = 0.0) -> bool:
        return self.low > value or self.high < value


NAN_INTERVAL = Interval(math.nan, math.nan)


def t_interval(values, level: float = LEVEL) -> Interval:
    """Student's t interval of the mean of ``values`` (NaNs dropped); NaN below 2 values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return NAN_INTERVAL
    half = sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return Interval(x.mean() - half, x.mean() + half)


def t_interval_from(mean: float, std: float, n: int, level: float = LEVEL) -> Interval:
    """``t_interval`` from a mean, sample std and count (what summary.csv already holds)."""
    if n < 2 or not (math.isfinite(mean) and math.isfinite(std)):
        return NAN_INTERVAL
    half = sps.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean - half, mean + half)


# Resamples are made in blocks of rows of about this many entries, so that a large val set
# (places365's 36,500 photos) never holds 2000 x N counts at once.
BLOCK_ENTRIES = 1 << 22


def index_blocks(n_photos: int, n_boot: int, seed: int = BOOT_SEED):
    """Blocks of rows of photo indices drawn with replacement, one resample per row, all
    from one stream: rows are drawn in order, so they do not depend on the block size and
    the first k rows of any ``n_boot >= k`` are the same (FID replicates made at scoring
    time with ``N_BOOT_SET`` rows pair row by row with the report's first resamples)."""
    rng = np.random.default_rng([seed, 1])
    rows = max(1, BLOCK_ENTRIES // max(n_photos, 1))
    for start in range(0, n_boot, rows):
        yield rng.integers(0, n_photos, size=(min(rows, n_boot - start), n_photos))


def photo_indices(n_photos: int, n_boot: int, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot, n_photos) every resample's photo indices (``index_blocks`` joined)."""
    return np.concatenate(list(index_blocks(n_photos, n_boot, seed)))


def _counts(idx: np.ndarray, n_photos: int) -> np.ndarray:
    rows = len(idx)
    flat = (idx + n_photos * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n_photos).reshape(rows, n_photos).astype(float)


@functools.lru_cache(maxsize=8)
def _small_count_blocks(n_photos: int, n_boot: int, seed: int) -> tuple:
    blocks = []
    start = 0
    for idx in index_blocks(n_photos, n_boot, seed):
        counts = _counts(idx, n_photos)
        counts.flags.writeable = False
        blocks.append((start, counts))
        start += len(idx)
    return tuple(blocks)


def count_blocks(n_photos: int, n_boot: int, seed: int = BOOT_SEED):
    """``(first row, (rows, n_photos) counts)`` blocks: how often each photo is drawn in each
    resample of ``index_blocks``. Small draws (one block) are cached: every pair of a report
    reuses the same resamples."""
    if n_photos * n_boot <= BLOCK_ENTRIES:
        yield from _small_count_blocks(n_photos, n_boot, seed)
        return
    start = 0
    for idx in index_blocks(n_photos, n_boot, seed):
        yield start, _counts(idx, n_photos)
        start += len(idx)


def photo_counts(n_photos: int, n_boot: int, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot, n_photos) all of ``count_blocks`` at once (for small draws)."""
    return np.concatenate([c for _, c in count_blocks(n_photos, n_boot, seed)])


@functools.lru_cache(maxsize=16)
def seed_counts(n_seeds: int, n_boot: int, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot, n_seeds) how often each seed is drawn in each resample (all ones for one seed)."""
    if n_seeds == 1:
        out = np.ones((n_boot, 1))
    else:
        idx = np.random.default_rng([seed, 2]).integers(0, n_seeds, size=(n_boot, n_seeds))
        out = (idx[:, :, None] == np.arange(n_seeds)).sum(1).astype(float)
    out.flags.writeable = False
    return out


def set_replicates(metric_of, n_photos: int, n_boot: int = N_BOOT_SET, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot,) a set metric recomputed on each photo resample: ``metric_of(indices)``
    gets each row of ``photo_indices`` (e.g. FID of the features of those photos, predicted
    and real alike) and returns a number."""
    return np.array([float(metric_of(idx)) for block in index_blocks(n_photos, n_boot, seed) for idx in block])


@dataclass(frozen=True)
class Sample:
    """One combination's values of one metric on the val photos.

    ``values`` (S, N): per seed and photo. The set value of each seed is
    * the mean over photos, weighted by ``weights`` (N,) if given (``auc_rebal``: each
      photo's share of the pooled weight);
    * with ``reference`` (N,), |mean of values - mean of reference| (``delta_cf``: the
      photos' own colourfulness);
    * with ``statistic``, whatever it computes from the resample's photo counts (a derived
      metric's value: any function of per-image values);
    * with ``replicates`` (S, B), the set metric recomputed at scoring time on the first B
      rows of ``photo_indices`` (FID, KID); ``observed`` (S,) is its value on all photos.
    """

    values: np.ndarray
    weights: np.ndarray | None = None
    reference: np.ndarray | None = None
    # any other statistic of the photos: counts (B, N) -> (B, S) values (a derived metric's)
    statistic: Callable[[np.ndarray], np.ndarray] | None = None
    replicates: np.ndarray | None = None
    observed: np.ndarray | None = None

    @property
    def n_seeds(self) -> int:
        return (self.replicates if self.replicates is not None else self.values).shape[0]

    @property
    def n_photos(self) -> int:
        return self.values.shape[1]

    @property
    def kind(self) -> str:
        if self.replicates is not None:
            return "replicates"
        if self.reference is not None:
            return "delta"
        if self.statistic is not None:
            return "statistic"
        return "mean" if self.weights is None else "weighted mean"

    @property
    def n_boot_max(self) -> int:
        return self.replicates.shape[1] if self.replicates is not None else 10**9  # no limit

    def per_seed(self, counts: np.ndarray, start: int = 0) -> np.ndarray:
        """(B, S) each seed's set value on each resample, given the resamples' (B, N) photo
        counts (for ``replicates``: rows ``start`` to ``start + B`` of ``photo_counts``)."""
        x = np.asarray(self.values, dtype=float)
        if self.replicates is not None:
            return np.asarray(self.replicates, dtype=float)[:, start : start + len(counts)].T
        if self.statistic is not None:
            return np.asarray(self.statistic(counts), dtype=float)
        if self.reference is not None:
            n = counts.sum(1, keepdims=True)
            return np.abs(counts @ x.T / n - (counts @ np.asarray(self.reference, float))[:, None] / n)
        w = counts if self.weights is None else counts * np.asarray(self.weights, dtype=float)
        return w @ x.T / w.sum(1, keepdims=True)

    def point(self) -> np.ndarray:
        """(S,) each seed's set value on all photos."""
        if self.replicates is not None:
            return np.asarray(self.observed, dtype=float)
        return self.per_seed(np.ones((1, self.n_photos)))[0]


def _percentiles(boot: np.ndarray, level: float) -> Interval:
    lo, hi = np.percentile(boot, [50 - 50 * level, 50 + 50 * level])
    return Interval(float(lo), float(hi))


def photo_ci(sample: Sample, n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = LEVEL) -> Interval:
    """Percentile bootstrap interval of the mean over seeds of the set value, photos resampled
    and seeds held fixed."""
    n_boot = min(n_boot, sample.n_boot_max)
    boot = np.concatenate([
        sample.per_seed(counts, start).mean(1) for start, counts in count_blocks(sample.n_photos, n_boot, seed)
    ])
    return _percentiles(boot, level)


def wilcoxon_p(differences) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-value of per-photo differences (..., N), vectorised
    over leading axes; NaNs are left out, and a row with no non-zero difference gets 1."""
    d = np.asarray(differences, dtype=float)
    flat = d.reshape(-1, d.shape[-1])
    void = ~np.any((flat != 0) & ~np.isnan(flat), axis=1)
    safe = np.where(void[:, None], 1.0, flat)  # scipy refuses all-zero rows; answered below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample / ties notes: the normal approximation is fine at N >= 20
        if np.isnan(safe).any():
            p = np.array([sps.wilcoxon(r[~np.isnan(r)]).pvalue if (~np.isnan(r)).sum() else 1.0 for r in safe])
        else:
            p = np.atleast_1d(sps.wilcoxon(safe, axis=1).pvalue)
    p = np.where(void, 1.0, p)
    return p.reshape(d.shape[:-1]) if d.ndim > 1 else p[0]


def bootstrap_p(boot: np.ndarray, observed: float) -> float:
    """Two-sided p-value of ``observed`` against 0 with the bootstrap's standard error (a
    Wald test: normal approximation). Not the share of resamples beyond 0: with the 200
    FID replicates that could never go below 0.01, i.e. never survive Holm over 5+ pairs."""
    se = float(np.std(boot, ddof=1)) if len(boot) > 1 else math.nan
    if not math.isfinite(se) or se == 0:
        # no spread over the resamples (one photo, or copies of one): nothing to test
        # against, so no p-value -- never the 0 a zero standard error would give
        return 1.0 if observed == 0 else math.nan
    return float(2 * sps.norm.sf(abs(observed) / se))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaNs ignored and kept)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    m = int(finite.sum())
    if m:
        order = np.argsort(p[finite], kind="stable")
        stepped = np.minimum(1.0, np.maximum.accumulate(p[finite][order] * (m - np.arange(m))))
        adjusted = np.empty(m)
        adjusted[order] = stepped
        out[finite] = adjusted
    return out


def seed_t_p(differences) -> float:
    """Two-sided one-sample t-test p-value of per-seed differences against 0 (NaN for one
    seed): does the difference hold across training runs, not only in these ones?"""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.nan
    if np.ptp(d) == 0:  # no spread: the t statistic is 0/0 or infinite
        return 1.0 if d[0] == 0 else 0.0
    return float(sps.ttest_1samp(d, 0.0).pvalue)


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one metric. ``diff`` is in the metric's own direction: positive
    means ``a`` is better (higher on a higher-is-better metric, lower on a lower one).
    ``p`` tests the difference over photos, ``p_seeds`` over seeds (NaN with one seed)."""

    diff: float
    ci: Interval
    p: float
    p_seeds: float
    test: str  # "wilcoxon" or "bootstrap": how ``p`` was computed, or why it was not (``untestable``)
    n_photos: int
    n_seeds: int
    n_boot: int


# The fewest distinct photos a photo test is run on: below 6, a two-sided Wilcoxon test
# cannot reach p < 0.05 at all (its smallest p is 2 / 2^n), and a bootstrap over so few
# photos has no spread worth the name.
MIN_PHOTOS = 6


def untestable(n_photos: int, n_distinct: int | None = None) -> str:
    """Why a sample of ``n_photos`` (``n_distinct`` of them different) supports no photo
    test, or "" when it does."""
    distinct = n_photos if n_distinct is None else min(n_distinct, n_photos)
    if distinct >= MIN_PHOTOS:
        return ""
    copies = f" ({n_photos} scored, copies counted once)" if distinct < n_photos else ""
    return f"not tested: {distinct} distinct val photo(s){copies}, at least {MIN_PHOTOS} needed"


def compare(a: Sample, b: Sample, sign: float, n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = LEVEL,
            n_distinct: int | None = None) -> Comparison:
    """The paired difference ``sign * (a - b)`` of the set values, averaged over seeds.

    Interval: each resample draws seeds (with replacement, paired: the same seed numbers for
    both), then photos (the same photos for both), and averages the drawn seeds' differences
    on the drawn photos -- a hierarchical bootstrap that carries both training noise and
    photo sampling; with one seed, photos only.

    ``p`` (photos): Wilcoxon signed-rank on the per-photo differences of the seed means for
    plain means over photos (psnr, de00, ...); for set metrics and weighted means, a z-test
    with the standard error of photo resamples, seeds held fixed (``bootstrap_p``). ``p_seeds``: a t-test
    on the per-seed differences. The per-photo test alone treats the trained models as
    fixed: with seed-to-seed noise as large as the difference it flags most pairs of
    identical losses (76 % at 3 seeds in tests/test_stats.py), hence both (``is_real``).

    With fewer than ``MIN_PHOTOS`` distinct photos (``n_distinct``: the photos with
    different pixels, when known) no photo test is run: ``p`` is NaN and ``test`` says why.
    """
    if a.n_photos != b.n_photos or a.n_seeds != b.n_seeds:
        raise ValueError(f"paired samples must have the same photos and seeds: {a.values.shape} vs {b.values.shape}")
    n_boot = min(n_boot, a.n_boot_max, b.n_boot_max)
    d = np.concatenate([  # (B, S): each resample's difference per seed
        sign * (a.per_seed(counts, start) - b.per_seed(counts, start))
        for start, counts in count_blocks(a.n_photos, n_boot, seed)
    ])
    boot = (seed_counts(a.n_seeds, n_boot, seed) * d).sum(1) / a.n_seeds
    per_seed = sign * (a.point() - b.point())
    why = untestable(a.n_photos, n_distinct)
    if why:
        p, test = math.nan, why
    elif a.kind == b.kind == "mean":
        per_photo = sign * (np.asarray(a.values, float) - np.asarray(b.values, float)).mean(0)
        p, test = float(wilcoxon_p(per_photo)), "wilcoxon"
    else:
        p, test = bootstrap_p(d.mean(1), float(per_seed.mean())), "bootstrap"
    return Comparison(
        float(per_seed.mean()), _percentiles(boot, level), p, seed_t_p(per_seed), test, a.n_photos, a.n_seeds, n_boot,
    )


def combined_p(p_photos: float, p_seeds: float) -> float:
    """The intersection-union p-value of "real across photos and seeds": the larger of the
    two (the photo test's alone with one seed). Requiring every test to reject keeps the
    level at alpha without a further correction."""
    return p_photos if not math.isfinite(p_seeds) else max(p_photos, p_seeds)


def is_real(p: float, ci: Interval, alpha: float = ALPHA) -> bool:
    """Called real when the (adjusted, combined) p-value and the interval both say so."""
    return bool(math.isfinite(p) and p < alpha and ci.excludes(0.0))
