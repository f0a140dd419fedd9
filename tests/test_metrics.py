"""Unit and property tests of prhlib.metrics (the reference comparison is in test_metrics_reference.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prhlib import metrics
from prhlib.metrics import geometry, neighbours

FAST = settings(max_examples=12, deadline=None, derandomize=True)  # reproducible examples


def shared_latent(n=60, d_a=12, d_b=9, m=4, noise=0.5, seed=0):
    """Two float64 views of one latent: linear maps plus independent noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, m))
    a = z @ rng.standard_normal((m, d_a)) + noise * rng.standard_normal((n, d_a))
    b = np.tanh(z @ rng.standard_normal((m, d_b))) + noise * rng.standard_normal((n, d_b))
    return a, b


def random_rotation(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# Every similarity metric, as functions of (a, b, k).
SIMILARITIES = {
    "mutual_knn": lambda a, b, k: metrics.mutual_knn(a, b, k),
    "cycle_knn": lambda a, b, k: metrics.cycle_knn(a, b, k),
    "lcs_knn": lambda a, b, k: metrics.lcs_knn(a, b, k),
    "edit_distance_knn": lambda a, b, k: metrics.edit_distance_knn(a, b, k),
    "cka": lambda a, b, k: metrics.cka(a, b),
    "unbiased_cka": lambda a, b, k: metrics.unbiased_cka(a, b),
    "cka_rbf": lambda a, b, k: metrics.cka(a, b, kernel="rbf", sigma="median"),
    "cknna": lambda a, b, k: metrics.cknna(a, b, k=max(k, 2)),
    "svcca": lambda a, b, k: metrics.svcca(a, b, dim=3),
    "rsa_spearman": lambda a, b, k: metrics.rsa(a, b),
    "rsa_kendall": lambda a, b, k: metrics.rsa(a, b, method="kendall", distance="cosine"),
    "procrustes": lambda a, b, k: metrics.procrustes_similarity(a, b),
}
# CKNNA is not symmetric: the official unbiased HSIC of its masked (non-symmetric) kernels is not.
SYMMETRIC = [m for m in SIMILARITIES if m not in ("cycle_knn", "cknna")]
SELF_ONE = [m for m in SIMILARITIES if m not in ("cycle_knn", "lcs_knn")]

data_params = dict(n=st.integers(20, 60), k=st.integers(1, 6), seed=st.integers(0, 10_000))


# ------------------------------------------------------------------------------------------------
# golden values
# ------------------------------------------------------------------------------------------------
def test_kornblith_demo_values():
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    assert metrics.cka(x, y) == pytest.approx(0.55761, abs=5e-6)
    assert metrics.unbiased_cka(x, y) == pytest.approx(0.51346, abs=5e-6)
    assert metrics.cka(x, y, kernel="rbf", sigma="median", median_scale=0.5) == pytest.approx(0.65483, abs=5e-6)


def test_unbiased_hsic_equals_the_u_statistic_definition():
    """Song et al. (2012): the mean over ordered distinct (i, j, q, r) of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    K, L = x @ x.T, np.exp(-((y[:, None] - y[None]) ** 2).sum(-1))
    terms = [K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q]
             for i, j, q, r in itertools.permutations(range(7), 4)]
    assert metrics.hsic(K, L, unbiased=True) == pytest.approx(np.mean(terms), rel=1e-10)


def test_biased_hsic_is_trace_khlh():
    rng = np.random.default_rng(4)
    K, L = rng.standard_normal((9, 9)), rng.standard_normal((9, 9))  # not symmetric on purpose
    H = np.eye(9) - 1 / 9
    assert metrics.hsic(K, L) == pytest.approx(np.trace(K @ H @ L @ H), rel=1e-10)


def test_linear_cka_feature_route_equals_gram_route():
    a, b = shared_latent(n=40, d_a=5, d_b=3)   # features cheaper: prhlib avoids the n x n Grams
    Ka, Kb = a @ a.T, b @ b.T
    for unbiased in (False, True):
        via_grams = metrics.hsic(Ka, Kb, unbiased) / math.sqrt(metrics.hsic(Ka, Ka, unbiased)
                                                                  * metrics.hsic(Kb, Kb, unbiased))
        assert metrics.cka(a, b, unbiased=unbiased) == pytest.approx(via_grams, rel=1e-9)
        wide_a, wide_b = np.hstack([a, np.zeros((40, 60))]), np.hstack([b, np.zeros((40, 70))])
        assert metrics.cka(wide_a, wide_b, unbiased=unbiased) == pytest.approx(via_grams, rel=1e-9)


def test_cknna_with_all_neighbours_is_unbiased_cka():
    a, b = shared_latent()
    assert metrics.cknna(a, b, k=None) == pytest.approx(metrics.unbiased_cka(a, b), rel=1e-9)
    assert metrics.cknna(a, b, k=a.shape[0] - 1) == pytest.approx(metrics.unbiased_cka(a, b), rel=1e-9)


# ------------------------------------------------------------------------------------------------
# neighbours and the dynamic programmes
# ------------------------------------------------------------------------------------------------
def test_knn_excludes_self_and_sorts_by_similarity():
    a, _ = shared_latent(n=50)
    nn = metrics.knn(a, 7).numpy()
    sims = a @ a.T
    np.fill_diagonal(sims, -np.inf)
    assert not (nn == np.arange(50)[:, None]).any()
    want = np.argsort(-sims, axis=1)[:, :7]
    np.testing.assert_array_equal(nn, want)


def test_chunked_neighbour_search_equals_dense(monkeypatch):
    a, b = shared_latent(n=70)
    dense = metrics.knn(a, 5)
    np.testing.assert_array_equal(metrics.knn(a, 5, chunk_rows=9).numpy(), dense.numpy())
    full = [metrics.measure(a, b, m, k=5) for m in ("mutual_knn", "cycle_knn")]
    monkeypatch.setattr(neighbours, "CHUNK_ELEMENTS", 300)   # blocks of 4 rows; sorted edge codes, no table
    assert [metrics.measure(a, b, m, k=5) for m in ("mutual_knn", "cycle_knn")] == full


def lcs_py(x, y):
    dp = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i, j in itertools.product(range(1, len(x) + 1), range(1, len(y) + 1)):
        dp[i][j] = dp[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(dp[i - 1][j], dp[i][j - 1])
    return dp[-1][-1]


def levenshtein_py(x, y):
    prev = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        cur = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] != y[j - 1]))
        prev = cur
    return prev[-1]


@FAST
@given(k=st.integers(1, 7), seed=st.integers(0, 10_000))
def test_vectorised_lcs_and_levenshtein_match_textbook_versions(k, seed):
    rng = np.random.default_rng(seed)
    x = np.stack([rng.choice(12, size=k, replace=False) for _ in range(15)])
    y = np.stack([rng.choice(12, size=k, replace=False) for _ in range(15)])
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    assert neighbours.lcs_lengths(tx, ty).tolist() == [lcs_py(a, b) for a, b in zip(x, y)]
    assert neighbours.levenshtein_distances(tx, ty).tolist() == [levenshtein_py(a, b) for a, b in zip(x, y)]
    overlap = [len(set(a) & set(b)) for a, b in zip(x, y)]
    assert neighbours.overlap_counts(tx, ty).tolist() == overlap


def test_per_sample_scores_average_to_the_metric():
    a, b = shared_latent()
    for m in metrics.NEIGHBOUR_METRICS:
        assert metrics.per_sample_scores(a, b, m, k=4).mean() == pytest.approx(metrics.measure(a, b, m, k=4))


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------
@FAST
@given(**data_params)
def test_simultaneous_row_permutation_changes_nothing(n, k, seed):
    a, b = shared_latent(n=n, seed=seed)
    perm = np.random.default_rng(seed + 1).permutation(n)
    for name, f in SIMILARITIES.items():
        assert f(a[perm], b[perm], k) == pytest.approx(f(a, b, k), abs=1e-9), name


@FAST
@given(scale_a=st.floats(0.01, 100), scale_b=st.floats(0.01, 100), **data_params)
def test_rotation_and_isotropic_scaling_leave_mutual_knn_and_linear_cka_unchanged(n, k, seed, scale_a, scale_b):
    a, b = shared_latent(n=n, seed=seed)
    rng = np.random.default_rng(seed + 2)
    ra = scale_a * a @ random_rotation(a.shape[1], rng)
    rb = scale_b * b @ random_rotation(b.shape[1], rng)
    assert metrics.mutual_knn(ra, rb, k) == metrics.mutual_knn(a, b, k)
    assert metrics.cka(ra, rb) == pytest.approx(metrics.cka(a, b), abs=1e-9)
    assert metrics.unbiased_cka(ra, rb) == pytest.approx(metrics.unbiased_cka(a, b), abs=1e-9)
    assert metrics.procrustes_distance(ra, rb) == pytest.approx(metrics.procrustes_distance(a, b), abs=1e-7)


def test_anisotropic_scaling_does_change_them():
    a, b = shared_latent(n=80, seed=5)
    stretched = a * np.r_[30.0, np.ones(a.shape[1] - 1)]
    assert metrics.cka(stretched, b) != pytest.approx(metrics.cka(a, b), abs=1e-3)
    assert metrics.mutual_knn(stretched, b, 5) != metrics.mutual_knn(a, b, 5)


@FAST
@given(**data_params)
def test_symmetric_metrics_are_symmetric(n, k, seed):
    a, b = shared_latent(n=n, seed=seed)
    for name in SYMMETRIC:
        f = SIMILARITIES[name]
        assert f(a, b, k) == pytest.approx(f(b, a, k), abs=1e-9), name


@FAST
@given(**data_params)
def test_self_similarity_is_maximal_and_bounds_hold(n, k, seed):
    a, b = shared_latent(n=n, seed=seed)
    for name in SELF_ONE:
        assert SIMILARITIES[name](a, a, k) == pytest.approx(1.0, abs=1e-9), name
    assert metrics.lcs_knn(a, a, k) == pytest.approx(k)
    assert metrics.procrustes_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    v = {name: f(a, b, k) for name, f in SIMILARITIES.items()}
    for name in ("mutual_knn", "cycle_knn", "edit_distance_knn", "cka", "cka_rbf", "svcca", "procrustes"):
        assert -1e-12 <= v[name] <= 1 + 1e-12, (name, v[name])
    assert 0 <= v["lcs_knn"] <= k
    for name in ("unbiased_cka", "cknna", "rsa_spearman", "rsa_kendall"):
        assert -1 - 1e-12 <= v[name] <= 1 + 1e-12, (name, v[name])
    assert 0 <= metrics.procrustes_distance(a, b) <= math.sqrt(2)
    assert v["lcs_knn"] >= v["mutual_knn"] * 0  # lcs counts ordered matches
    assert v["lcs_knn"] <= v["mutual_knn"] * k + 1e-9  # ... a common subsequence uses shared neighbours only


def test_unrelated_representations_score_near_chance():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((400, 30)), rng.standard_normal((400, 30))
    assert abs(metrics.mutual_knn(a, b, 10) - metrics.chance("mutual_knn", 400, k=10)) < 0.01
    assert abs(metrics.unbiased_cka(a, b)) < 0.02
    assert abs(metrics.rsa(a, b)) < 0.05
    assert metrics.linear_predictivity(a, b) < 0.02


# ------------------------------------------------------------------------------------------------
# the other metrics against independent implementations
# ------------------------------------------------------------------------------------------------
def test_rsa_matches_scipy():
    from scipy.spatial.distance import pdist
    from scipy.stats import kendalltau, spearmanr

    a, b = shared_latent(n=30)
    for dist in ("euclidean", "cosine", "correlation"):
        da, db = pdist(a, dist), pdist(b, dist)
        assert metrics.rsa(a, b, distance=dist) == pytest.approx(spearmanr(da, db).statistic, abs=1e-9)
        assert metrics.rsa(a, b, "kendall", dist) == pytest.approx(kendalltau(da, db).statistic, abs=1e-9)


def test_rsa_spearman_handles_tied_distances_like_scipy():
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    grid = np.array([[i, j] for i in range(4) for j in range(4)], dtype=float)   # many equal distances
    other = grid + np.random.default_rng(0).standard_normal(grid.shape) * 0.3
    want = spearmanr(pdist(grid), pdist(other)).statistic
    assert metrics.rsa(grid, other) == pytest.approx(want, abs=1e-12)
    assert metrics.calibrate(grid, other, "rsa", permutations=3).score == pytest.approx(want, abs=1e-12)


def test_procrustes_matches_scipy_orthogonal_procrustes():
    from scipy.linalg import orthogonal_procrustes

    a, b = shared_latent(n=50, d_a=6, d_b=6)
    ac, bc = a - a.mean(0), b - b.mean(0)
    ac, bc = ac / np.linalg.norm(ac), bc / np.linalg.norm(bc)
    r, _ = orthogonal_procrustes(bc, ac)
    assert metrics.procrustes_distance(a, b) == pytest.approx(np.linalg.norm(ac - bc @ r), abs=1e-9)
    assert metrics.procrustes_distance(a, b, angular=True) == pytest.approx(
        math.acos(1 - np.linalg.norm(ac - bc @ r) ** 2 / 2), abs=1e-7)


def test_svcca_equals_mean_cosine_of_principal_angles():
    from scipy.linalg import subspace_angles

    a, b = shared_latent(n=80, d_a=12, d_b=9)

    def top(x, dim):
        z = (x - x.mean(0)) / x.std(0, ddof=1)
        return np.linalg.svd(z, full_matrices=False)[0][:, :dim]

    want = np.cos(subspace_angles(top(a, 4), top(b, 4))).mean()
    assert metrics.svcca(a, b, dim=4) == pytest.approx(want, abs=1e-9)


def test_linear_predictivity_agrees_with_sklearn_ridge_on_the_same_folds():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(1)
    a = rng.standard_normal((90, 6))
    b = a @ rng.standard_normal((6, 3)) + rng.standard_normal((90, 3))
    order = np.random.default_rng(0).permutation(90)
    pred = np.empty_like(b)
    for test in np.array_split(order, 5):
        train = np.setdiff1d(np.arange(90), test)
        pred[test] = Ridge(alpha=2.0).fit(a[train], b[train]).predict(a[test])
    want = r2_score(b, pred, multioutput="variance_weighted")
    assert metrics.linear_predictivity(a, b, alphas=[2.0], folds=5, seed=0) == pytest.approx(want, abs=1e-10)


def test_ridge_penalty_is_chosen_by_exact_leave_one_out_error():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    a = rng.standard_normal((30, 8))
    b = a[:, :2] @ rng.standard_normal((2, 2)) + 2 * rng.standard_normal((30, 2))
    alphas = [0.01, 1.0, 10.0, 100.0]
    loo = []
    for alpha in alphas:
        errors = []
        for i in range(30):
            keep = np.arange(30) != i
            errors.append(((Ridge(alpha=alpha).fit(a[keep], b[keep]).predict(a[i:i + 1]) - b[i]) ** 2).mean())
        loo.append(np.mean(errors))
    _, _, chosen = geometry.ridge_fit_loo(torch.from_numpy(a), torch.from_numpy(b),
                                          torch.tensor(alphas, dtype=torch.float64))
    assert chosen == alphas[int(np.argmin(loo))]


def test_linear_predictivity_finds_a_linear_map():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((120, 8))
    b = a @ rng.standard_normal((8, 5))
    assert metrics.linear_predictivity(a, b) > 0.99
    assert metrics.linear_predictivity(a, b + 3 * rng.standard_normal(b.shape)) < metrics.linear_predictivity(a, b)


# ------------------------------------------------------------------------------------------------
# inputs: torch, layers, bad input
# ------------------------------------------------------------------------------------------------
def test_torch_tensors_give_the_numpy_numbers():
    a, b = shared_latent()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for name, f in SIMILARITIES.items():
        assert f(ta, tb, 4) == pytest.approx(f(a, b, 4), abs=1e-12), name
    assert metrics.linear_predictivity(ta, tb) == pytest.approx(metrics.linear_predictivity(a, b))
    prepared = metrics.prepare(ta.float())
    assert isinstance(prepared, torch.Tensor) and prepared.dtype == torch.float32
    assert isinstance(metrics.prepare(a), np.ndarray)


def test_prepare_clamps_at_the_exact_quantile_and_normalises_rows():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3, 8)).astype(np.float32)
    x[0, 0, 0] = 50.0
    flat = np.sort(np.abs(x).ravel())
    t = flat[int(0.95 * flat.size)]
    want = np.clip(x, -t, t)
    want = want / np.linalg.norm(want, axis=2, keepdims=True)
    got = metrics.prepare(x, q=0.95)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=2), 1.0, rtol=1e-6)
    as_list = metrics.prepare([x[:, 0, :], x[:, 1, :5], x[:, 2, :]], q=1.0)
    assert [l.shape for l in as_list] == [(20, 8), (20, 5), (20, 8)]
    np.testing.assert_allclose(as_list[0], x[:, 0] / np.linalg.norm(x[:, 0], axis=1, keepdims=True), rtol=1e-6)


def test_best_layer_pair_is_the_brute_force_maximum():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((50, 3))
    la = np.stack([z @ rng.standard_normal((3, 6)) + s * rng.standard_normal((50, 6)) for s in (3, 0.2, 1)], 1)
    lb = [z @ rng.standard_normal((3, d)) + s * rng.standard_normal((50, d)) for s, d in ((2, 4), (0.1, 7))]
    pa, pb = metrics.prepare(la), metrics.prepare(lb)
    for metric in ("mutual_knn", "cycle_knn", "lcs_knn", "cka", "unbiased_cka", "cknna", "rsa"):
        brute = np.array([[metrics.measure(pa[:, i], pb[j], metric, k=5) for j in range(2)] for i in range(3)])
        np.testing.assert_allclose(metrics.layer_scores(la, lb, metric, k=5), brute, atol=1e-9, err_msg=metric)
        score, (i, j) = metrics.best_layer_pair(la, lb, metric, k=5)
        assert score == pytest.approx(max(brute.max(), 0.0)) and brute[i, j] == brute.max()
    unrelated = metrics.best_layer_pair(rng.standard_normal((50, 2, 4)), rng.standard_normal((50, 2, 4)),
                                        "unbiased_cka")
    assert unrelated[0] >= 0.0 and len(unrelated[1]) == 2


BAD_INPUTS = [
    (lambda: metrics.mutual_knn(np.full((5, 2), np.nan), np.ones((5, 2))), "NaN"),
    (lambda: metrics.cka(np.ones((5, 2)), np.array([[np.inf, 1]] * 5)), "inf"),
    (lambda: metrics.mutual_knn(np.ones((5, 2)), np.ones((6, 2)), 2), "same samples"),
    (lambda: metrics.mutual_knn(np.eye(5), np.eye(5), 5), "between 1 and n - 1"),
    (lambda: metrics.mutual_knn(np.eye(5), np.eye(5), 0), "between 1 and n - 1"),
    (lambda: metrics.mutual_knn(np.eye(5), np.eye(5), 2.5), "integer"),
    (lambda: metrics.cka(np.arange(5.0), np.arange(5.0)), "2-D"),
    (lambda: metrics.unbiased_cka(np.eye(3), np.eye(3)), "n >= 4"),
    (lambda: metrics.cknna(np.eye(3), np.eye(3), k=2), "n >= 4"),
    (lambda: metrics.cknna(np.eye(6), np.eye(6), k=1), "between 2 and n - 1"),
    (lambda: metrics.cka(np.ones((6, 3)), np.eye(6)[:, :3]), "no variance"),
    (lambda: metrics.svcca(np.c_[np.ones(8), np.eye(8)[:, :3]], np.eye(8)[:, :4], dim=2), "zero-variance"),
    (lambda: metrics.svcca(np.eye(8)[:, :3], np.eye(8)[:, :3], dim=4), "exceeds"),
    (lambda: metrics.procrustes_distance(np.ones((6, 2)), np.eye(6)[:, :2]), "no variance"),
    (lambda: metrics.rsa(np.ones((6, 2)), np.eye(6)[:, :2]), "equal"),
    (lambda: metrics.prepare(np.zeros((4, 3)), q=1.0), "all zero"),
    (lambda: metrics.prepare(np.zeros((4, 3))), "quantile"),
    (lambda: metrics.cka(np.eye(6), np.eye(6), kernel="poly"), "kernel"),
    (lambda: metrics.cka(np.eye(6), np.eye(6), kernel="rbf", sigma=0.0), "sigma"),
    (lambda: metrics.measure(np.eye(6), np.eye(6), "cosine"), "unknown metric"),
    (lambda: metrics.chance("cknna", 100, k=10), "no analytic chance"),
    (lambda: metrics.chance("mutual_knn", 100), "needs k"),
    (lambda: metrics.calibrate(np.eye(6), np.eye(6), permutations=0), "permutations"),
    (lambda: metrics.calibrate(np.eye(6), np.eye(6), k=2, alpha=1.5), "alpha"),
    (lambda: metrics.bootstrap_ci(np.eye(6), np.eye(6), "linear_predictivity"), "n >= 8"),
    (lambda: metrics.linear_predictivity(np.eye(6), np.eye(6), alphas=[0.0]), "positive"),
    (lambda: metrics.linear_predictivity(np.eye(6), np.ones((6, 2))), "no variance"),
    (lambda: metrics.rsa(np.eye(6), np.eye(6)[::-1], method="pearson"), "spearman"),
    (lambda: metrics.best_layer_pair(np.ones((5, 2, 3)), np.ones((6, 2, 3))), "same samples"),
    (lambda: metrics.best_layer_pair([], [np.eye(4)]), "empty"),
]


@pytest.mark.parametrize("call,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_raises_a_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------------
# chance levels, calibration, bootstrap
# ------------------------------------------------------------------------------------------------
def test_chance_formulas():
    assert metrics.chance("mutual_knn", 1024, k=10) == pytest.approx(10 / 1023)
    for d, want in ((64, 0.06), (256, 0.20), (1024, 0.50), (4096, 0.80)):
        assert metrics.chance("cka", 1024, d_a=d) == pytest.approx(want, abs=0.005)
    assert metrics.chance("unbiased_cka", 50) == 0.0


def test_cka_chance_formula_matches_simulation_for_unequal_widths():
    rng = np.random.default_rng(0)
    n, d_a, d_b = 150, 20, 90
    sims = [metrics.cka(rng.standard_normal((n, d_a)), rng.standard_normal((n, d_b))) for _ in range(30)]
    assert np.mean(sims) == pytest.approx(metrics.chance("cka", n, d_a=d_a, d_b=d_b), rel=0.05)


def test_permutation_null_of_mutual_knn_is_centred_on_k_over_n_minus_1():
    a, b = shared_latent(n=150, seed=1)
    res = metrics.calibrate(a, b, "mutual_knn", k=10, permutations=300, seed=0)
    assert res.null.mean() == pytest.approx(10 / 149, abs=0.004)


def test_calibration_threshold_p_value_and_calibrated_score():
    a, b = shared_latent(n=80, seed=2)
    K = 99
    res = metrics.calibrate(a, b, "cka", permutations=K, alpha=0.05, seed=3)
    pooled = np.sort(np.r_[res.score, res.null])
    assert res.threshold == pooled[95 - 1]           # ceil(0.95 * 100) = 95, exactly
    assert res.p_value == (1 + np.sum(res.null >= res.score)) / (K + 1)
    assert res.calibrated == pytest.approx(max((res.score - res.threshold) / (1 - res.threshold), 0))
    assert res.score == pytest.approx(metrics.cka(a, b))
    same = metrics.calibrate(a, a, "mutual_knn", k=5, permutations=K)
    assert same.p_value == pytest.approx(1 / (K + 1)) and same.calibrated == pytest.approx(1.0)
    assert same.significant
    rng = np.random.default_rng(0)
    unrelated = metrics.calibrate(rng.standard_normal((80, 5)), rng.standard_normal((80, 5)), "mutual_knn",
                                  k=5, permutations=K, seed=1)
    assert unrelated.calibrated <= 0.05 and unrelated.p_value > 0.05
    again = metrics.calibrate(a, b, "cka", permutations=K, alpha=0.05, seed=3)
    np.testing.assert_array_equal(again.null, res.null)


@pytest.mark.parametrize("metric,kwargs", [
    ("mutual_knn", {}), ("cycle_knn", {}), ("lcs_knn", {}), ("edit_distance_knn", {}), ("cka", {}),
    ("cka", {"kernel": "rbf", "sigma": 2.0}), ("unbiased_cka", {}), ("cknna", {}), ("rsa", {}),
    ("rsa", {"distance": "cosine"}), ("rsa", {"method": "kendall"}), ("procrustes", {}), ("svcca", {"dim": 3}),
    ("linear_predictivity", {})])
def test_fast_permutation_scores_equal_recomputing_on_shuffled_rows(metric, kwargs):
    a, b = shared_latent(n=40, seed=4)
    res = metrics.calibrate(a, b, metric, k=4, permutations=5, seed=9, **kwargs)
    rng = np.random.default_rng(9)
    for null in res.null:
        perm = rng.permutation(40)
        assert null == pytest.approx(metrics.measure(a, b[perm], metric, k=4, **kwargs), abs=1e-9)


def test_max_t_null_dominates_the_single_pair_null():
    rng = np.random.default_rng(5)
    la, lb = rng.standard_normal((60, 4, 6)), rng.standard_normal((60, 5, 6))
    maxt = metrics.calibrate_layers(la, lb, "mutual_knn", k=5, permutations=40, seed=2)
    pa, pb = metrics.prepare(la), metrics.prepare(lb)
    single = metrics.calibrate(pa[:, 1], pb[:, 3], "mutual_knn", k=5, permutations=40, seed=2)
    assert np.all(maxt.null >= single.null)
    assert maxt.threshold > single.threshold
    assert maxt.score == pytest.approx(metrics.best_layer_pair(la, lb, "mutual_knn", k=5)[0])
    assert maxt.layers == metrics.best_layer_pair(la, lb, "mutual_knn", k=5)[1]


def test_bootstrap_interval():
    a, b = shared_latent(n=100, seed=6)
    ci = metrics.bootstrap_ci(a, b, "mutual_knn", k=5, n_boot=300, seed=1)
    assert ci.method == "queries" and ci.low <= ci.score <= ci.high and ci.high - ci.low < 0.3
    again = metrics.bootstrap_ci(a, b, "mutual_knn", k=5, n_boot=300, seed=1)
    assert (again.low, again.high) == (ci.low, ci.high)
    ci2 = metrics.bootstrap_ci(a, b, "cka", n_boot=50, seed=1)
    assert ci2.method == "half-samples" and ci2.low <= ci2.score <= ci2.high


def test_side_by_side_neighbour_search_equals_one_at_a_time():
    # _knn_all runs the searches in parallel on one thread each; the lists must not depend on that
    rng = np.random.default_rng(3)
    xs = [torch.from_numpy(rng.standard_normal((300, d)).astype(np.float32)) for d in (5, 40, 64)]
    parallel = neighbours.nearest_many(xs, 7)
    threads = torch.get_num_threads()
    for x, got in zip(xs, parallel):
        assert torch.equal(got, neighbours.nearest(x, 7))
    assert torch.get_num_threads() == threads   # the caller's thread setting is restored


# ------------------------------------------------------------------------------------------------
# issue 13/17/19: registry options, paper-era concatenation, padding, axioms
# ------------------------------------------------------------------------------------------------
def test_registry_is_the_one_metric_table():
    assert metrics.METRICS == tuple(metrics.REGISTRY)
    assert metrics.max_score("lcs_knn", k=7) == 7.0 and metrics.max_score("cka") == 1.0
    assert {m for m, s in metrics.REGISTRY.items() if s.takes_k} == set(metrics.NEIGHBOUR_METRICS) | {"cknna"}


@pytest.mark.parametrize("call", [
    lambda a, b: metrics.calibrate(a, b, metric="cka", kernal="rbf", permutations=5),
    lambda a, b: metrics.best_layer_pair(a[:, None], b[:, None], bogus_option=1),
    lambda a, b: metrics.measure(a, b, metric="mutual_knn", kernel="rbf"),
    lambda a, b: metrics.layer_scores(a[:, None], b[:, None], metric="svcca", method="kendall"),
    lambda a, b: metrics.bootstrap_ci(a, b, metric="mutual_knn", n_boot=5, kernel="rbf"),
])
def test_unknown_options_raise(call):
    a, b = shared_latent(n=40)
    with pytest.raises(ValueError, match="unknown keyword"):
        call(a, b)


@pytest.mark.parametrize("call,match", [
    (lambda a, b: metrics.cka(a, b, kernel="rbf", sigma="median", median_scale=0), "median_scale"),
    (lambda a, b: metrics.cka(a, b, kernel="rbf", sigma="median", median_scale=float("nan")), "median_scale"),
    (lambda a, b: metrics.chance("cka", 100, d_a=float("nan")), "d_a"),
    (lambda a, b: metrics.measure(np.array([["x"] * 3] * 5), b[:5]), "numbers"),
    (lambda a, b: metrics.cka(a.astype(object), b), "object"),
])
def test_degenerate_options_raise(call, match):
    a, b = shared_latent(n=40)
    with pytest.raises(ValueError, match=match):
        call(a, b)


def test_numpy_float32_alpha_and_q_are_accepted():
    a, b = shared_latent(n=40)
    r32 = metrics.calibrate(a, b, k=5, permutations=19, alpha=np.float32(0.05))
    r64 = metrics.calibrate(a, b, k=5, permutations=19, alpha=0.05)
    assert r32.threshold == r64.threshold and r32.alpha == 0.05
    layers = np.stack([a, a + 0.1], axis=1)
    np.testing.assert_array_equal(metrics.prepare(layers, q=np.float32(0.95)), metrics.prepare(layers, q=0.95))


def _official_case():
    """The input generated for the official code (see OFFICIAL_4DD084E below)."""
    g = torch.Generator().manual_seed(0)
    n, d = 40, 6
    z = torch.randn(n, 4, generator=g)
    xa = torch.stack([z @ torch.randn(4, d, generator=g) + torch.randn(n, d, generator=g) * s
                      for s in (2.0, 1.0, 0.5)], 1)
    xb = torch.stack([z @ torch.randn(4, d, generator=g) + torch.randn(n, d, generator=g) * s
                      for s in (0.3, 3.0)], 1)
    return xa, xb


#: platonic-rep at commit 4dd084e (paper era): metrics.remove_outliers(q=0.95, exact=True) of each tensor,
#: then measure_alignment.compute_score(xa, xb, metric, topk=5), run outside this repository on the
#: input of _official_case(). Layer index -1 is the concatenation of all layers.
OFFICIAL_4DD084E = {
    "mutual_knn": (0.32999998331069946, (2, 0)),
    "cka": (0.5331732034683228, (-1, 0)),
    "unbiased_cka": (0.48183774948120117, (-1, 0)),
    "cycle_knn": (0.824999988079071, (1, -1)),
}


@pytest.mark.parametrize("metric", sorted(OFFICIAL_4DD084E))
def test_include_concat_matches_the_paper_era_official_code(metric):
    xa, xb = _official_case()
    score, pair = metrics.best_layer_pair(xa, xb, metric=metric, k=5, include_concat=True)
    want_score, want_pair = OFFICIAL_4DD084E[metric]
    assert pair == want_pair
    assert score == pytest.approx(want_score, abs=1e-5)   # the official code runs in float32, prhlib in float64
    scores = metrics.layer_scores(xa, xb, metric=metric, k=5, include_concat=True)
    assert scores.shape == (4, 3)
    np.testing.assert_allclose(scores[1:, 1:], metrics.layer_scores(xa, xb, metric=metric, k=5))


def test_calibrate_layers_include_concat_enlarges_the_max():
    xa, xb = _official_case()
    plain = metrics.calibrate_layers(xa, xb, metric="cka", permutations=19)
    concat = metrics.calibrate_layers(xa, xb, metric="cka", permutations=19, include_concat=True)
    assert concat.layers == (-1, 0) and concat.score == pytest.approx(OFFICIAL_4DD084E["cka"][0], abs=2e-6)
    assert (concat.null >= plain.null - 1e-12).all()            # same permutations, a max over more candidates


def test_svcca_works_on_zero_padded_layers():
    rng = np.random.default_rng(0)
    a, b = shared_latent(n=80, d_a=12, d_b=9)
    padded = np.zeros((80, 2, 12))
    padded[:, 0, :7] = a[:, :7]                                  # a narrower layer, zero-padded
    padded[:, 1] = a
    want = metrics.svcca(a[:, :7], b, dim=5)
    assert metrics.svcca(padded[:, 0], b, dim=5) == pytest.approx(want, abs=1e-12)
    score, pair = metrics.best_layer_pair(padded, b[:, None] + 0 * rng.normal(size=(80, 1, 9)),
                                          metric="svcca", dim=5)
    assert 0 < score <= 1 and pair[1] == 0
    with pytest.raises(ValueError, match="zero-variance"):
        metrics.svcca(np.c_[a, np.ones(80)], b, dim=5)          # a constant, non-zero column still raises


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_procrustes_distance_triangle_inequality(seed):
    rng = np.random.default_rng(seed)
    x, y, z = (rng.normal(size=(12, 4)) * rng.uniform(0.1, 3) for _ in range(3))
    d = metrics.procrustes_distance
    assert d(x, z) <= d(x, y) + d(y, z) + 1e-9
    assert d(x, z, angular=True) <= d(x, y, angular=True) + d(y, z, angular=True) + 1e-9


@pytest.mark.parametrize("metric", ["mutual_knn", "lcs_knn", "edit_distance_knn", "cka", "unbiased_cka",
                                    "svcca", "rsa", "procrustes"])
def test_symmetric_metrics_are_symmetric(metric):
    a, b = shared_latent(n=60)
    kw = {"dim": 3} if metric == "svcca" else {}
    assert metrics.measure(a, b, metric, k=5, **kw) == pytest.approx(metrics.measure(b, a, metric, k=5, **kw),
                                                                    abs=1e-12)


def test_procrustes_rotation_maps_a_onto_b():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(30, 4))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    rot = metrics.procrustes_rotation(a, a @ q)
    np.testing.assert_allclose(rot, q, atol=1e-10)


def test_rsa_from_distances_and_mantel_test_agree_with_features():
    from scipy.spatial.distance import pdist, squareform

    a, b = shared_latent(n=30)
    da, db = squareform(pdist(a)), squareform(pdist(b))
    assert metrics.rsa_from_distances(da, db) == pytest.approx(metrics.rsa(a, b), abs=1e-12)
    res = metrics.rsa_test(da, db, permutations=99, seed=1)
    assert res.score == pytest.approx(metrics.rsa(a, b), abs=1e-12)
    assert res.p_value == metrics.permutation_p_value(res.score, res.null)
    assert res.threshold == metrics.permutation_threshold(res.null, 0.05, observed=res.score)
    kendall = metrics.rsa_test(da, db, method="kendall", permutations=9)
    assert kendall.score == pytest.approx(metrics.rsa(a, b, method="kendall"), abs=1e-12)


def test_prepared_layer_is_the_layer_the_protocol_scored():
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(40, 5)), 30 * rng.normal(size=(40, 7))]
    full = metrics.prepare(layers)
    for i in range(2):
        np.testing.assert_allclose(metrics.prepared_layer(layers, i), full[i], atol=1e-6)
    # preparing a layer alone would clamp at another threshold
    assert not np.allclose(metrics.prepare(layers[0]), full[0])
    concat = metrics.prepared_layer(layers, -1, include_concat=True)
    assert concat.shape == (40, 12)
    np.testing.assert_allclose(np.linalg.norm(concat, axis=1), 1, atol=1e-6)
    # index -1 is the concatenation's score in best_layer_pair's numbering
    b = rng.normal(size=(40, 12))
    _, (i, j) = metrics.best_layer_pair(layers, [b], include_concat=True, k=5)
    got = metrics.prepared_layer(layers, i, include_concat=True)
    score = metrics.mutual_knn(got, metrics.prepared_layer([b], j, include_concat=True), k=5)
    assert score == pytest.approx(metrics.best_layer_pair(layers, [b], include_concat=True, k=5)[0])
    for bad in (2, -1, 1.0, True):
        with pytest.raises(ValueError, match="index must be"):
            metrics.prepared_layer(layers, bad)


def test_tie_aware_layer_scorer_equals_the_per_pair_rule():
    """The gather path of tied mutual k-NN layer scores equals the per-pair dense rule."""
    from prhlib.metrics import neighbours as nb
    rng = np.random.default_rng(3)
    base = rng.normal(size=(30, 4))
    tied = np.repeat(base, 2, axis=0)                   # duplicate rows: ties everywhere
    layers_a = [torch.as_tensor(tied + 0.01 * rng.normal(size=tied.shape)), torch.as_tensor(tied)]
    layers_b = [torch.as_tensor(np.round(rng.normal(size=(60, 3)), 1)), torch.as_tensor(tied[:, :2])]
    lists = nb.determined_lists(layers_a + layers_b, 5, "mutual_knn", ["a0", "a1", "b0", "b1"])
    ta, tb = lists[:2], lists[2:]
    assert any(t.rows.numel() for t in lists)
    fast = nb.tie_aware_scorer(ta, tb)
    for perm in (None, torch.as_tensor(rng.permutation(60))):
        slow = torch.stack([torch.stack([nb.tie_aware_terms(a, b, perm).mean() for b in tb]) for a in ta])
        np.testing.assert_allclose(fast(perm).numpy(), slow.numpy(), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# the two clamp rules of the official code (issue #17): exact global quantile vs per-sample, averaged
# --------------------------------------------------------------------------------------------------
def official_per_sample_threshold(x: torch.Tensor, q: float) -> float:
    """Hand transcription of the official rule without --precise: torch.quantile of each sample's |x|
    (flattened over its L x d values, default linear interpolation), averaged over samples."""
    return float(torch.quantile(x.abs().flatten(start_dim=1), q, dim=1).mean())


def official_exact_threshold(x: torch.Tensor, q: float) -> float:
    """Hand transcription of the official rule with --precise: sorted |x| at index int(q * numel)."""
    return float(x.reshape(-1).abs().sort().values[int(q * x.numel())])


def scaled_heavy_tails(n=50, L=3, d=32, seed=0, dtype=np.float32):
    """Student-t(2) values, each sample with its own log-normal scale (samples differ in size)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(2, size=(n, L, d)) * np.exp(rng.normal(0, 1.0, size=(n, 1, 1)))
    return x.astype(dtype)


@pytest.mark.parametrize("shape", [(50, 3, 32), (37, 1, 101), (20, 5, 7), (64, 2, 500)])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99, 0.999])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_sample_clamp_threshold_is_the_official_formula(shape, q, dtype):
    from prhlib.metrics.protocol import clamp_threshold

    x = torch.from_numpy(scaled_heavy_tails(*shape, seed=sum(shape), dtype=dtype))
    mats = [x[:, i, :] for i in range(x.shape[1])]
    got = clamp_threshold(mats, q, "per_sample")
    assert got.dtype == x.dtype
    assert float(got) == official_per_sample_threshold(x, q)       # bit for bit on the installed torch
    assert float(clamp_threshold(mats, q)) == official_exact_threshold(x, q)


def test_per_sample_threshold_torch_selection_path_equals_the_numpy_path():
    """The kthvalue branch (used off the CPU) gives the same order statistics as np.partition."""
    from prhlib.metrics.protocol import _row_order_statistics

    rows = torch.from_numpy(np.abs(scaled_heavy_tails(30, 1, 77, seed=5)[:, 0]))
    for lo, hi in [(0, 0), (40, 41), (76, 76), (72, 73)]:
        for a, b in zip(_row_order_statistics(rows, lo, hi, True), _row_order_statistics(rows, lo, hi, False)):
            assert torch.equal(a, b)


def test_per_sample_prepare_clamps_at_the_official_threshold():
    x = scaled_heavy_tails()
    t = official_per_sample_threshold(torch.from_numpy(x), 0.95)
    got = metrics.prepare(x, clamp="per_sample")
    want = metrics.prepare(np.clip(x, -np.float32(t), np.float32(t)), q=1)   # clip, then only normalise
    assert np.array_equal(got, want)
    # a 2-D input: each row's quantile over its d values
    one = x[:, 0, :]
    t1 = official_per_sample_threshold(torch.from_numpy(one), 0.9)
    assert np.array_equal(metrics.prepare(one, q=0.9, clamp="per_sample"),
                          metrics.prepare(np.clip(one, -np.float32(t1), np.float32(t1)), q=1))


def test_per_sample_clamp_pools_a_rows_values_across_a_list_of_layers():
    """Layers of different widths: row i's quantile is over all its layers' values, as for a tensor."""
    x = scaled_heavy_tails(40, 3, 16, seed=2)
    layers = [x[:, 0, :], x[:, 1, :9], x[:, 2, :5]]
    pooled = torch.from_numpy(np.concatenate(layers, axis=1))
    t = np.float32(official_per_sample_threshold(pooled, 0.95))
    got = metrics.prepare(layers, clamp="per_sample")
    want = metrics.prepare([np.clip(m, -t, t) for m in layers], q=1)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_default_clamp_is_unchanged_exact_rule():
    """clamp="exact" is the default everywhere and is the old rule: clip at sorted(|x|)[int(q numel)]."""
    x = scaled_heavy_tails(seed=3)
    y = scaled_heavy_tails(50, 2, 20, seed=4, dtype=np.float64)
    for q in (0.9, 0.95):
        t = np.float32(official_exact_threshold(torch.from_numpy(x), q))
        default = metrics.prepare(x, q=q)
        assert np.array_equal(default, metrics.prepare(x, q=q, clamp="exact"))
        assert np.array_equal(default, metrics.prepare(np.clip(x, -t, t), q=1))
    assert np.array_equal(metrics.layer_scores(x, y, k=5), metrics.layer_scores(x, y, k=5, clamp="exact"))
    assert metrics.best_layer_pair(x, y, k=5) == metrics.best_layer_pair(x, y, k=5, clamp="exact")
    assert np.array_equal(metrics.prepared_layer(x, 1), metrics.prepared_layer(x, 1, clamp="exact"))
    a, b = metrics.calibrate_layers(x, y, k=5, permutations=9), metrics.calibrate_layers(
        x, y, k=5, permutations=9, clamp="exact")
    assert (a.score, a.threshold, a.p_value, a.layers) == (b.score, b.threshold, b.p_value, b.layers)


def test_per_sample_clamp_is_threaded_through_the_layer_functions():
    x = scaled_heavy_tails(seed=6)
    y = scaled_heavy_tails(50, 2, 20, seed=7)
    px, py = metrics.prepare(x, clamp="per_sample"), metrics.prepare(y, clamp="per_sample")
    want = metrics.layer_scores(px, py, k=5, q=None)
    got = metrics.layer_scores(x, y, k=5, clamp="per_sample")
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, metrics.layer_scores(x, y, k=5))
    score, pair = metrics.best_layer_pair(x, y, k=5, clamp="per_sample")
    assert score == pytest.approx(max(0.0, want.max())) and want[pair] == pytest.approx(score)
    assert np.array_equal(metrics.prepared_layer(x, 2, clamp="per_sample"), px[:, 2])
    # the concatenation candidate is clamped at the same (whole-tensor) threshold
    concat = metrics.prepared_layer(x, -1, include_concat=True, clamp="per_sample")
    t = np.float32(official_per_sample_threshold(torch.from_numpy(x), 0.95))
    flat = np.clip(x, -t, t).reshape(50, -1)
    np.testing.assert_allclose(concat, flat / np.linalg.norm(flat, axis=1, keepdims=True), rtol=1e-6)
    res = metrics.calibrate_layers(x, y, k=5, permutations=9, clamp="per_sample")
    assert res.score == pytest.approx(score) and res.layers == pair


def test_per_sample_and_exact_clamps_differ_on_heavy_tailed_samples_of_different_sizes():
    from prhlib.metrics.protocol import clamp_threshold

    x = torch.from_numpy(scaled_heavy_tails(200, 3, 64, seed=8))
    mats = [x[:, i, :] for i in range(3)]
    exact, per_sample = float(clamp_threshold(mats, 0.99)), float(clamp_threshold(mats, 0.99, "per_sample"))
    assert per_sample < 0.8 * exact                       # measured: 0.60
    g = torch.from_numpy(np.random.default_rng(9).normal(size=(200, 3, 64)).astype(np.float32))
    gm = [g[:, i, :] for i in range(3)]
    ratio = float(clamp_threshold(gm, 0.99, "per_sample")) / float(clamp_threshold(gm, 0.99))
    assert 0.9 < ratio < 1.02                             # identically distributed rows: 0.97


@pytest.mark.parametrize("clamp", ["Exact", "global", "per-sample", None, 1])
def test_unknown_clamp_raises_everywhere(clamp):
    x = scaled_heavy_tails(20, 2, 6)
    calls = [lambda: metrics.prepare(x, clamp=clamp), lambda: metrics.prepare(x, q=1, clamp=clamp),
             lambda: metrics.prepared_layer(x, 0, q=None, clamp=clamp),
             lambda: metrics.layer_scores(x, x, k=3, clamp=clamp),
             lambda: metrics.best_layer_pair(x, x, k=3, clamp=clamp),
             lambda: metrics.calibrate_layers(x, x, k=3, permutations=3, clamp=clamp)]
    for call in calls:
        with pytest.raises(ValueError, match="clamp must be one of 'exact', 'per_sample'"):
            call()


def test_per_sample_clamp_edge_cases():
    x = scaled_heavy_tails(20, 2, 6)
    assert np.array_equal(metrics.prepare(x, q=1, clamp="per_sample"), metrics.prepare(x, q=1))
    sparse = np.zeros((10, 1, 40))
    sparse[:, 0, 0] = 1.0
    with pytest.raises(ValueError, match="per-sample quantile"):
        metrics.prepare(sparse, clamp="per_sample")
