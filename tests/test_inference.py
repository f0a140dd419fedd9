"""Meta-statistics: the exact permutation rule, rank correlations with intervals, paired differences."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from prhlib import metrics


def test_permutation_p_value_counts_the_observed_arrangement():
    null = np.array([0.1, 0.5, 0.5, 0.9])
    assert metrics.permutation_p_value(0.5, null) == (1 + 3) / 5
    assert metrics.permutation_p_value(1.0, null) == 1 / 5
    assert metrics.permutation_p_value(-1.0, null) == 1.0


@pytest.mark.parametrize("alpha,K", [(0.05, 999), (0.18, 999), (0.05, 19), (0.1, 99), (0.01, 200)])
def test_permutation_threshold_is_calibrates_exact_rank(alpha, K):
    rng = np.random.default_rng(K)
    null, observed = rng.normal(size=K), 0.3
    pool = np.sort(np.append(null, observed))
    rank = math.ceil((1 - Fraction(str(alpha))) * (K + 1))
    assert metrics.permutation_threshold(null, alpha, observed=observed) == pool[rank - 1]
    assert metrics.permutation_threshold(null, np.float32(alpha), observed=observed) == pool[rank - 1]


def test_permutation_threshold_matches_calibrate():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(60, 4))
    res = metrics.calibrate(a, b, metric="mutual_knn", k=5, permutations=99, alpha=0.18)
    assert metrics.permutation_threshold(res.null, 0.18, observed=res.score) == res.threshold
    assert metrics.permutation_p_value(res.score, res.null) == res.p_value


@pytest.mark.parametrize("bad,match", [([], "empty"), ([0.1, np.nan], "NaN")])
def test_permutation_rule_rejects_bad_nulls(bad, match):
    with pytest.raises(ValueError, match=match):
        metrics.permutation_p_value(0.1, bad)
    with pytest.raises(ValueError, match="alpha"):
        metrics.permutation_threshold([0.1, 0.2], 1.5)


@pytest.mark.parametrize("method,ref", [("spearman", stats.spearmanr), ("kendall", stats.kendalltau)])
def test_rank_correlation_estimate_and_p_value(method, ref):
    rng = np.random.default_rng(3)
    x = rng.normal(size=12)
    y = np.round(x + rng.normal(size=12), 1)
    r = metrics.rank_correlation(x, y, method=method, n_boot=500, permutations=1999, seed=1)
    expected = ref(x, y)
    assert r.estimate == pytest.approx(expected.statistic, abs=1e-12)
    assert r.ci_low <= r.estimate <= r.ci_high
    assert r.p_value == pytest.approx(expected.pvalue, abs=0.03)   # permutation vs scipy's exact/asymptotic
    assert r.n == 12 and r.method == method
    assert str(r).startswith("Spearman rho = " if method == "spearman" else "Kendall tau = ")
    assert "95% CI" in str(r) and "n = 12" in str(r)


def test_rank_correlation_is_deterministic_and_one_sided_option():
    x, y = np.arange(8.0), np.array([1, 0, 3, 2, 5, 4, 7, 6.0])
    r1 = metrics.rank_correlation(x, y, seed=5, permutations=999)
    assert r1 == metrics.rank_correlation(x, y, seed=5, permutations=999)
    greater = metrics.rank_correlation(x, y, seed=5, permutations=999, alternative="greater")
    less = metrics.rank_correlation(x, y, seed=5, permutations=999, alternative="less")
    assert greater.p_value < r1.p_value and less.p_value > 0.9


def test_rank_correlation_perfect_monotone_reaches_smallest_p():
    x = np.arange(10.0)
    r = metrics.rank_correlation(x, np.exp(x), permutations=999)
    assert r.estimate == 1.0 and r.ci_low == r.ci_high == 1.0
    assert r.p_value == pytest.approx(1 / 1000, abs=2 / 1000)   # a permutation may reproduce the order


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=[1, 2], y=[1, 2]), "n >= 3"),
    (dict(x=[1, 2, 3], y=[1, 2]), "same items"),
    (dict(x=[1, 1, 1], y=[1, 2, 3]), "constant"),
    (dict(x=[1, 2, np.nan], y=[1, 2, 3]), "NaN"),
    (dict(x=["a", "b", "c"], y=[1, 2, 3]), "numbers"),
    (dict(x=[1, 2, 3], y=[1, 3, 2], method="pearson"), "method"),
    (dict(x=[1, 2, 3], y=[1, 3, 2], seed=1.5), "seed"),
    (dict(x=[1, 2, 3], y=[1, 3, 2], n_boot=True), "n_boot"),
])
def test_rank_correlation_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.rank_correlation(**kwargs)


def test_bootstrap_difference_same_pair_same_metric_is_exactly_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(80, 6))
    b = a + rng.normal(size=(80, 6))
    res = metrics.bootstrap_difference((a, b), (a, b), metric="mutual_knn", k=5, n_boot=200)
    assert res.difference == 0 and res.low == 0 and res.high == 0 and not res.excludes_zero


def test_bootstrap_difference_detects_a_better_partner_and_is_paired():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(150, 8))
    close, far = a + 0.3 * rng.normal(size=a.shape), a + 3.0 * rng.normal(size=a.shape)
    res = metrics.bootstrap_difference((a, close), (a, far), metric="mutual_knn", k=10, n_boot=500)
    assert res.first == pytest.approx(metrics.mutual_knn(a, close, k=10))
    assert res.second == pytest.approx(metrics.mutual_knn(a, far, k=10))
    assert res.excludes_zero and res.low > 0 and "CI" in str(res)
    # paired replicates: the difference's spread is below the sum of the two separate spreads
    ci1 = metrics.bootstrap_ci(a, close, k=10, n_boot=500)
    ci2 = metrics.bootstrap_ci(a, far, k=10, n_boot=500)
    assert np.allclose(res.samples, ci1.samples - ci2.samples)   # same seed: the same item draws


def test_bootstrap_difference_two_metrics_one_pair():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(60, 5))
    b = a + rng.normal(size=a.shape)
    res = metrics.bootstrap_difference((a, b), (a, b), metric="cka", second_metric="unbiased_cka",
                                       n_boot=50)
    assert res.difference == pytest.approx(metrics.cka(a, b) - metrics.unbiased_cka(a, b))
    assert res.method == "half-samples"
    # both sides recomputed on the same half-samples: the replicates are the paired differences
    ci1 = metrics.bootstrap_ci(a, b, "cka", n_boot=50)
    ci2 = metrics.bootstrap_ci(a, b, "unbiased_cka", n_boot=50)
    assert np.allclose(res.samples, ci1.samples - ci2.samples)


@pytest.mark.parametrize("kwargs,match", [
    (dict(first=(np.eye(5),), second=(np.eye(5), np.eye(5))), "pair"),
    (dict(first=(np.eye(5), np.eye(5)), second=(np.eye(6), np.eye(6))), "same items"),
    (dict(first=(np.eye(5), np.eye(5)), second=(np.eye(5), np.eye(5)), n_boot=0), "n_boot"),
    (dict(first=(np.eye(5), np.eye(5)), second=(np.eye(5), np.eye(5)), metric="linear_predictivity"),
     "n >= 8"),
    (dict(first=(np.eye(9), np.eye(9)), second=(np.eye(9), np.eye(9)), metric="ckaa"), "unknown metric"),
])
def test_bootstrap_difference_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.bootstrap_difference(**kwargs)


# ------------------------------------------------------------------------------------------------
# bootstrap coverage: the interval must cover the population value about 95 % of the time
# ------------------------------------------------------------------------------------------------
def _gaussian_pair(rng, n, d, rho):
    """a ~ N(0, I_d); b = rho * a R + sqrt(1 - rho^2) * noise (R a random rotation): rho = 0 unrelated."""
    a = rng.normal(size=(n, d))
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return a, rho * a @ rot + math.sqrt(1 - rho**2) * rng.normal(size=(n, d))


def test_with_replacement_rows_would_exclude_the_unrelated_score():
    # the bug this scheme fixes: duplicated rows inflate unbiased CKA far above its score
    rng = np.random.default_rng(0)
    a, b = _gaussian_pair(rng, 100, 64, 0.0)
    boot = [metrics.unbiased_cka(a[i], b[i]) for i in rng.integers(0, 100, size=(30, 100))]
    score = metrics.unbiased_cka(a, b)
    assert min(boot) > score + 0.2
    ci = metrics.bootstrap_ci(a, b, "unbiased_cka", n_boot=200, seed=0)
    assert ci.method == "half-samples" and ci.low <= 0.0 <= ci.high and ci.low <= ci.score <= ci.high


@pytest.mark.slow
@pytest.mark.parametrize("metric,rho", [("unbiased_cka", 0.0), ("unbiased_cka", 0.6), ("cka", 0.0),
                                        ("cka", 0.6), ("procrustes", 0.0), ("procrustes", 0.6)])
def test_bootstrap_ci_covers_the_population_value(metric, rho):
    """Coverage over 120 repetitions, n = 100, d = 16. Population value: the mean score of 300 fresh
    samples of size n (for unbiased CKA at rho = 0 it is 0 exactly in expectation). Tolerance: coverage
    in [0.88, 1.0]; 120 Bernoulli(0.95) draws fall below 0.88 with probability < 0.2 %. Conservative
    (over-covering) intervals are allowed: at independence CKA-type statistics are degenerate and the
    half-sample spread overstates theirs (measured 0.97-1.0); related data measured 0.95-0.99."""
    rng = np.random.default_rng(12)
    n, d = 100, 16
    target = np.mean([metrics.measure(*_gaussian_pair(rng, n, d, rho), metric) for _ in range(300)])
    if metric == "unbiased_cka" and rho == 0:
        assert abs(target) < 0.01
    cover = []
    for r in range(120):
        ci = metrics.bootstrap_ci(*_gaussian_pair(rng, n, d, rho), metric, n_boot=150, seed=r)
        cover.append(ci.low <= target <= ci.high)
    assert 0.88 <= np.mean(cover) <= 1.0, np.mean(cover)


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_bootstrap_difference_covers_the_population_difference(rho):
    """Paired half-sample interval of cka - procrustes: covers the population difference (mean over
    300 fresh samples) in [0.88, 1.0] of 100 repetitions."""
    rng = np.random.default_rng(5)
    n, d = 100, 16

    def diff(a, b):
        return metrics.cka(a, b) - metrics.procrustes_similarity(a, b)
    target = np.mean([diff(*_gaussian_pair(rng, n, d, rho)) for _ in range(300)])
    cover = []
    for r in range(100):
        pair = _gaussian_pair(rng, n, d, rho)
        res = metrics.bootstrap_difference(pair, pair, "cka", "procrustes", n_boot=150, seed=r)
        cover.append(res.low <= target <= res.high)
    assert 0.88 <= np.mean(cover) <= 1.0, np.mean(cover)


@pytest.mark.parametrize("clamp", ["exact", "per_sample"])
def test_calibrate_layers_clamps_once_with_the_chosen_rule(clamp):
    """calibrate_layers(clamp=...) equals the calibration of layers prepared with that rule and used as
    given: same observed pair, same null (the clamp is not redone per permutation)."""
    rng = np.random.default_rng(21)
    z = rng.normal(size=(70, 4))
    scale = np.exp(rng.normal(size=(70, 1, 1)))      # samples of different sizes: the rules differ
    a = scale * (z @ rng.normal(size=(4, 24))).reshape(70, 2, 12) + rng.standard_t(2, size=(70, 2, 12))
    b = scale * (z @ rng.normal(size=(4, 30))).reshape(70, 3, 10) + rng.standard_t(2, size=(70, 3, 10))
    got = metrics.calibrate_layers(a, b, k=5, permutations=29, seed=1, clamp=clamp)
    want = metrics.calibrate_layers(metrics.prepare(a, clamp=clamp), metrics.prepare(b, clamp=clamp), k=5,
                                    q=None, permutations=29, seed=1)
    assert (got.score, got.layers, got.p_value) == (want.score, want.layers, want.p_value)
    np.testing.assert_array_equal(got.null, want.null)
    other = metrics.calibrate_layers(a, b, k=5, permutations=29, seed=1,
                                     clamp="exact" if clamp == "per_sample" else "per_sample")
    assert other.score != got.score
