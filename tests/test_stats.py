"""bench.score.stats on synthetic per-image scores where the truth is planted."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import stats as sps

from bench.score import stats as st

N = 242  # the shared val set's size


def photos(rng, n=N):
    """Per-photo difficulty: PSNR varies far more between photos (sd 3 dB) than between two
    models on the same photo, which is why pairing pays."""
    return rng.normal(22.0, 3.0, n)


def model(rng, base, shift=0.0, seeds=1, seed_sd=0.0, photo_sd=0.7):
    """(seeds, photos) scores: the photos' difficulty, a planted shift, a per-seed offset
    (training noise shared by all photos of a seed) and per-photo noise."""
    return base + shift + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, photo_sd, (seeds, len(base)))


def test_a_planted_0_3_db_difference_on_242_photos_is_found():
    rng = np.random.default_rng(1)
    base = photos(rng)
    a, b = model(rng, base, 0.3), model(rng, base)
    c = st.compare(st.Sample(a), st.Sample(b), sign=1.0)
    assert c.diff == pytest.approx(a.mean() - b.mean())
    assert c.ci.low > 0 and c.ci.low < 0.3 < c.ci.high and c.ci.high - c.ci.low < 0.4
    assert c.p < 1e-3 and c.test == "wilcoxon" and math.isnan(c.p_seeds)
    assert st.is_real(st.combined_p(c.p, c.p_seeds), c.ci)
    # in a lower-is-better metric's direction the same numbers read the other way round
    flipped = st.compare(st.Sample(a), st.Sample(b), sign=-1.0)
    assert flipped.diff == pytest.approx(-c.diff) and flipped.ci.high < 0
    # Unpaired, the photos' own spread hides it: what per-photo pairing buys.
    assert sps.ttest_ind(a[0], b[0], equal_var=False).pvalue > 0.05


def test_identical_distributions_are_flagged_in_about_5_percent_of_200_comparisons():
    rng = np.random.default_rng(2)
    base = photos(rng, 200 * N).reshape(200, N)
    a = base + rng.normal(0, 0.7, base.shape)
    b = base + rng.normal(0, 0.7, base.shape)
    p = st.wilcoxon_p(a - b)  # one vectorised call for the 200 comparisons
    assert p.shape == (200,)
    rate = (p < 0.05).mean()
    assert 0.01 <= rate <= 0.08, rate  # 5 % +- 2 binomial sd of 200 draws
    # the bootstrap intervals through the whole path (compare), fewer resamples
    flagged = [st.compare(st.Sample(x[None]), st.Sample(y[None]), 1.0, n_boot=400).ci.excludes(0) for x, y in zip(a, b)]
    assert np.mean(flagged) <= 0.08


def test_set_metric_z_test_flags_identical_washed_out_models_in_about_5_percent():
    """delta_cf (a difference of set means) is tested with the bootstrap's standard error."""
    rng = np.random.default_rng(11)
    flagged = []
    for _ in range(200):
        truth = rng.gamma(4, 10, N)  # the photos' own colourfulness
        a, b = (np.clip(truth * 0.3 + rng.normal(0, 3, N), 0, None) for _ in range(2))
        c = st.compare(st.Sample(a[None], reference=truth), st.Sample(b[None], reference=truth), -1.0, n_boot=300)
        assert c.test == "bootstrap"
        flagged.append(c.p < 0.05)
    assert 0.01 <= np.mean(flagged) <= 0.08


def test_seed_noise_alone_is_not_called_a_real_difference():
    """Two identical losses whose trained models differ by seed luck (sd 0.3 dB per seed):
    the per-photo test takes the models as given and flags most pairs; requiring the seed
    test and the interval too brings false claims back to about 5 %."""
    rng = np.random.default_rng(3)
    photo_only, claimed = [], []
    for _ in range(200):
        base = photos(rng)
        a, b = model(rng, base, seeds=3, seed_sd=0.3), model(rng, base, seeds=3, seed_sd=0.3)
        c = st.compare(st.Sample(a), st.Sample(b), 1.0, n_boot=300)
        photo_only.append(c.p < 0.05)
        claimed.append(st.is_real(st.combined_p(c.p, c.p_seeds), c.ci))
    assert np.mean(photo_only) > 0.5
    assert np.mean(claimed) <= 0.08


def test_with_consistent_seeds_a_planted_difference_is_still_found():
    rng = np.random.default_rng(4)
    base = photos(rng)
    a, b = model(rng, base, 0.3, seeds=3, seed_sd=0.02), model(rng, base, seeds=3, seed_sd=0.02)
    c = st.compare(st.Sample(a), st.Sample(b), 1.0)
    assert c.n_seeds == 3 and c.p_seeds < 0.05 and st.is_real(st.combined_p(c.p, c.p_seeds), c.ci)
    assert c.ci.low < 0.3 < c.ci.high


def test_resampling_is_seeded_fast_and_prefix_stable(monkeypatch):
    rng = np.random.default_rng(5)
    base = photos(rng)
    a, b = st.Sample(model(rng, base, 0.1, seeds=3)), st.Sample(model(rng, base, seeds=3))
    st._small_count_blocks.cache_clear()
    started = time.perf_counter()
    first = st.compare(a, b, 1.0, n_boot=2000)
    assert time.perf_counter() - started < 0.5  # vectorised: no Python loop over resamples
    assert st.compare(a, b, 1.0, n_boot=2000) == first  # same data, same interval
    whole = st.photo_indices(N, 2000)
    # the first rows of a longer draw are the shorter draw: set-metric replicates made with
    # N_BOOT_SET rows pair with the report's resamples
    assert np.array_equal(st.photo_indices(N, 2000)[:200], st.photo_indices(N, 200))
    # a large val set is resampled in blocks of rows: the same resamples, the same interval
    monkeypatch.setattr(st, "BLOCK_ENTRIES", 7 * N)
    assert np.array_equal(st.photo_indices(N, 2000), whole)
    blocked = st.compare(a, b, 1.0, n_boot=2000)
    assert (blocked.ci.low, blocked.ci.high) == pytest.approx((first.ci.low, first.ci.high), rel=1e-9)  # BLAS round-off
    assert (st.photo_counts(N, 50).sum(1) == N).all()
    assert (st.seed_counts(3, 50).sum(1) == 3).all() and (st.seed_counts(1, 5) == 1).all()


def test_set_values_mean_weighted_delta_and_replicates():
    rng = np.random.default_rng(6)
    x = rng.normal(5, 1, (2, 30))
    ref = rng.normal(6, 1, 30)
    w = rng.uniform(0.2, 3, 30)
    assert st.Sample(x).point() == pytest.approx(x.mean(1))
    assert st.Sample(x, weights=w).point() == pytest.approx((x * w).sum(1) / w.sum())
    assert st.Sample(x, reference=ref).point() == pytest.approx(np.abs(x.mean(1) - ref.mean()))
    # replicates made from photo indices agree with the count-based resampling
    reps = np.stack([st.set_replicates(lambda idx, row=row: row[idx].mean(), 30, 40) for row in x])
    direct = st.Sample(x).per_seed(st.photo_counts(30, 40))
    assert st.Sample(x, replicates=reps, observed=x.mean(1)).per_seed(st.photo_counts(30, 40)) == pytest.approx(direct)
    # a set metric compares through the bootstrap p-value, and only as far as its replicates go
    c = st.compare(st.Sample(x, replicates=reps, observed=x.mean(1)), st.Sample(x - 1, replicates=reps - 1, observed=x.mean(1) - 1), 1.0)
    assert c.test == "bootstrap" and c.n_boot == 40 and c.diff == pytest.approx(1.0) and c.ci.low == pytest.approx(1.0)


def test_photo_interval_covers_the_mean_and_shrinks_with_more_photos():
    rng = np.random.default_rng(7)
    small, large = st.photo_ci(st.Sample(rng.normal(0, 1, (1, 60)))), st.photo_ci(st.Sample(rng.normal(0, 1, (1, 2000))))
    assert small.low < 0 < small.high and large.low < 0 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_holm_t_interval_and_degenerate_inputs():
    adjusted = st.holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(adjusted[4])
    assert st.holm([0.5, 0.9]).tolist() == [1.0, 1.0]
    values = [22.1, 22.4, 21.9]
    lo, hi = sps.t.interval(0.95, 2, loc=np.mean(values), scale=sps.sem(values))
    assert st.t_interval(values) == st.Interval(pytest.approx(lo), pytest.approx(hi))
    assert st.t_interval_from(np.mean(values), np.std(values, ddof=1), 3).low == pytest.approx(lo)
    assert math.isnan(st.t_interval([1.0]).low)
    assert st.wilcoxon_p(np.zeros(10)) == 1.0  # a model against itself
    assert st.wilcoxon_p(np.zeros((2, 10))).tolist() == [1.0, 1.0]
    assert st.seed_t_p([0.0, 0.0]) == 1.0 and math.isnan(st.seed_t_p([0.3]))
    assert st.combined_p(0.01, math.nan) == 0.01 and st.combined_p(0.01, 0.2) == 0.2


def test_samples_too_small_or_without_spread_are_never_called_real():
    """One val photo, or val photos that are copies of one image: a zero-width interval and
    a p-value of 0 from a zero bootstrap spread used to call the difference real."""
    rng = np.random.default_rng(0)
    one = st.compare(st.Sample(np.array([[20.0]])), st.Sample(np.array([[19.0]])), 1.0, n_boot=200)
    assert math.isnan(one.p) and one.test.startswith("not tested: 1 distinct val photo")
    assert not st.is_real(st.combined_p(one.p, one.p_seeds), one.ci)
    # eight copies of one photo: eight identical differences, one photo's worth of evidence
    a, b = np.full((1, 8), 20.0), np.full((1, 8), 19.0)
    copies = st.compare(st.Sample(a), st.Sample(b), 1.0, n_boot=200, n_distinct=1)
    assert math.isnan(copies.p) and "8 scored, copies counted once" in copies.test
    # a set-like statistic without spread gives no p-value (not p = 0)
    assert math.isnan(st.bootstrap_p(np.full(100, 1.0), 1.0)) and st.bootstrap_p(np.zeros(100), 0.0) == 1.0
    # enough distinct photos: tested as before
    x = rng.normal(20, 1, (1, 30))
    real = st.compare(st.Sample(x + 0.5), st.Sample(x), 1.0, n_boot=200, n_distinct=30)
    assert real.test == "wilcoxon" and real.p < 1e-3
