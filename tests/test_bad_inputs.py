"""Bad and degenerate inputs to every public entry point: each gets a clear error or a documented value.

One table of cases (``CASES``: call, expected exception type, phrase of its message), the tie rule of
the neighbour metrics, overflow/underflow, the memory check, and hypothesis property tests of the
invariances on float64 and float32 inputs. ``test_case_count`` states how many cases the table holds.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prhlib import _checks, config, data, features, metrics, models, world, zoo

RNG = np.random.default_rng(0)
A = RNG.normal(size=(40, 6))
B = A @ RNG.normal(size=(6, 5)) + 0.5 * RNG.normal(size=(40, 5))
CONST = np.ones((40, 4))
DUP_A = np.vstack([A[:20], A[:20]])          # every row twice
DUP_B = np.vstack([B[:20], B[:20]])
BIG32 = (A * 1e20).astype(np.float32)
LAYERS = np.stack([A, A + 0.1], axis=1)      # n x 2 x d

SCORING = ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cka", "unbiased_cka", "cknna",
           "svcca", "rsa", "procrustes", "linear_predictivity"]
OPTS = {"svcca": {"dim": 3}}

# (id, call, exception type, phrase of the message)
CASES = [
    # --- arrays: NaN, inf, shapes, rows, dtypes ------------------------------------------------
    *[(f"{m}-nan", lambda m=m: metrics.measure(np.where(A > 2, np.nan, A), B, m, k=5, **OPTS.get(m, {})),
       ValueError, "NaN") for m in SCORING],
    *[(f"{m}-inf", lambda m=m: metrics.measure(A, np.where(B > 2, np.inf, B), m, k=5, **OPTS.get(m, {})),
       ValueError, "inf") for m in SCORING],
    *[(f"{m}-rows", lambda m=m: metrics.measure(A, B[:30], m, k=5, **OPTS.get(m, {})),
       ValueError, "same samples") for m in SCORING],
    *[(f"{m}-1d", lambda m=m: metrics.measure(A[:, 0], B, m, k=5), ValueError, "2-D") for m in SCORING],
    *[(f"{m}-3d", lambda m=m: metrics.measure(LAYERS, B, m, k=5), ValueError, "2-D") for m in SCORING],
    *[(f"{m}-strings", lambda m=m: metrics.measure(A.astype(str), B, m, k=5), ValueError, "must hold numbers")
      for m in SCORING],
    *[(f"{m}-object", lambda m=m: metrics.measure(np.array([[1, None]] * 40, dtype=object), B, m, k=5),
       ValueError, "object array") for m in SCORING],
    *[(f"{m}-complex", lambda m=m: metrics.measure(A + 1j, B, m, k=5), ValueError, "real numbers")
      for m in SCORING],
    *[(f"{m}-one-row", lambda m=m: metrics.measure(A[:1], B[:1], m, k=5), ValueError, "at least 2 rows")
      for m in SCORING],
    *[(f"{m}-no-columns", lambda m=m: metrics.measure(A[:, :0], B, m, k=5), ValueError, "no columns")
      for m in SCORING],
    # --- options ---------------------------------------------------------------------------------
    *[(f"{m}-k-{k!r}", lambda m=m, k=k: metrics.measure(A, B, m, k=k), ValueError, "k")
      for m in ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cknna"]
      for k in (0, 40, 2.5, True, "3")],
    *[(f"{m}-unknown-option", lambda m=m: metrics.measure(A, B, m, k=5, bogus=1), ValueError,
       "unknown keyword") for m in SCORING],
    ("unknown-metric", lambda: metrics.measure(A, B, "ckaa"), ValueError, "unknown metric"),
    ("cka-kernel", lambda: metrics.cka(A, B, kernel="poly"), ValueError, "kernel"),
    ("cka-sigma-0", lambda: metrics.cka(A, B, kernel="rbf", sigma=0), ValueError, "sigma"),
    ("cka-sigma-nan", lambda: metrics.cka(A, B, kernel="rbf", sigma=float("nan")), ValueError, "finite"),
    ("cka-median-scale-0", lambda: metrics.cka(A, B, kernel="rbf", sigma="median", median_scale=0),
     ValueError, "median_scale"),
    ("cka-median-scale-nan", lambda: metrics.cka(A, B, kernel="rbf", sigma="median",
                                                 median_scale=float("nan")), ValueError, "median_scale"),
    ("cka-unbiased-int", lambda: metrics.cka(A, B, unbiased=1), ValueError, "True or False"),
    ("unbiased-cka-n3", lambda: metrics.unbiased_cka(A[:3], B[:3]), ValueError, "n >= 4"),
    ("svcca-dim", lambda: metrics.svcca(A, B, dim=9), ValueError, "dim"),
    ("rsa-method", lambda: metrics.rsa(A, B, method="pearson"), ValueError, "method"),
    ("rsa-distance", lambda: metrics.rsa(A, B, distance="manhattan"), ValueError, "distance"),
    ("rsa-n2", lambda: metrics.rsa(A[:2], B[:2]), ValueError, "n >= 3"),
    ("lin-pred-folds", lambda: metrics.linear_predictivity(A, B, folds=1), ValueError, "folds"),
    ("lin-pred-alphas", lambda: metrics.linear_predictivity(A, B, alphas=[-1.0]), ValueError, "alphas"),
    ("lin-pred-seed", lambda: metrics.linear_predictivity(A, B, seed=None), ValueError, "seed"),
    ("procrustes-angular", lambda: metrics.procrustes_distance(A, B, angular="yes"), ValueError, "angular"),
    ("hsic-not-square", lambda: metrics.hsic(A, B), ValueError, "square"),
    ("knn-k", lambda: metrics.knn(A, k=40), ValueError, "n - 1"),
    ("per-sample-metric", lambda: metrics.per_sample_scores(A, B, "cka"), ValueError, "neighbour metrics"),
    # --- degenerate data: no variance, ties, overflow -----------------------------------------------
    *[(f"{m}-constant", lambda m=m: metrics.measure(CONST, CONST, m, k=5, **OPTS.get(m, {})), ValueError,
       phrase) for m, phrase in [("cycle_knn", "not determined"),
                                 ("lcs_knn", "not determined"), ("edit_distance_knn", "not determined"),
                                 ("cknna", "not determined"), ("cka", "no variance"),
                                 ("unbiased_cka", "no variance"), ("svcca", "zero-variance"),
                                 ("rsa", "equal"), ("procrustes", "no variance"),
                                 ("linear_predictivity", "no variance")]],
    *[(f"{m}-duplicates-k4", lambda m=m: metrics.measure(DUP_A, DUP_B, m, k=4), ValueError, "not determined")
      for m in ["cycle_knn", "lcs_knn", "edit_distance_knn", "cknna"]],
    ("calibrate-constant", lambda: metrics.calibrate(CONST, CONST, "cycle_knn", k=5, permutations=9),
     ValueError, "not determined"),
    ("calibrate-layers-duplicates", lambda: metrics.calibrate_layers(
        np.stack([DUP_A] * 2, 1), np.stack([DUP_B] * 2, 1), "cycle_knn", k=4, permutations=9), ValueError,
     "not determined"),
    ("bootstrap-constant", lambda: metrics.bootstrap_ci(CONST, CONST, "cycle_knn", k=5, n_boot=9),
     ValueError, "not determined"),
    ("rbf-overflow", lambda: metrics.cka(A * 1e300, B, kernel="rbf"), ValueError, "overflow"),
    ("lin-pred-overflow", lambda: metrics.linear_predictivity(A * 1e300, B), ValueError, "too large"),
    ("prepare-zero-row", lambda: metrics.prepare(np.vstack([A, np.zeros((1, 6))]), q=1), ValueError, "zero"),
    ("prepare-q", lambda: metrics.prepare(A, q=0), ValueError, "q"),
    ("prepare-q-nan", lambda: metrics.prepare(A, q=float("nan")), ValueError, "q"),
    ("prepare-4d", lambda: metrics.prepare(A[None, None]), ValueError, "n x d"),
    # --- protocol, calibration, bootstrap ------------------------------------------------------------
    ("layer-scores-rows", lambda: metrics.layer_scores(LAYERS, LAYERS[:30]), ValueError, "same samples"),
    ("layer-scores-empty", lambda: metrics.layer_scores([], LAYERS), ValueError, "empty"),
    ("best-layer-pair-bogus", lambda: metrics.best_layer_pair(LAYERS, LAYERS, bogus_option=1), ValueError,
     "unknown keyword"),
    ("best-layer-pair-concat", lambda: metrics.best_layer_pair(LAYERS, LAYERS, include_concat=1), ValueError,
     "include_concat"),
    ("calibrate-kernal", lambda: metrics.calibrate(A, B, "cka", kernal="rbf"), ValueError, "kernal"),
    ("calibrate-alpha", lambda: metrics.calibrate(A, B, alpha=1.5), ValueError, "alpha"),
    ("calibrate-permutations", lambda: metrics.calibrate(A, B, permutations=0), ValueError, "permutations"),
    ("calibrate-seed", lambda: metrics.calibrate(A, B, seed=-1), ValueError, "seed"),
    ("calibrate-layers-q", lambda: metrics.calibrate_layers(LAYERS, LAYERS, q=2.0), ValueError, "q"),
    ("bootstrap-level", lambda: metrics.bootstrap_ci(A, B, level=1.0), ValueError, "level"),
    ("bootstrap-n-boot", lambda: metrics.bootstrap_ci(A, B, n_boot=1), ValueError, "n_boot"),
    ("bootstrap-small-n", lambda: metrics.bootstrap_ci(A[:7], B[:7], "cka"), ValueError, "n >= 8"),
    ("bootstrap-option", lambda: metrics.bootstrap_ci(A, B, "mutual_knn", kernel="rbf"), ValueError,
     "unknown keyword"),
    ("bootstrap-difference-pair", lambda: metrics.bootstrap_difference(A, (A, B)), ValueError, "pair"),
    ("chance-unknown", lambda: metrics.chance("ckaa", 10), ValueError, "unknown metric"),
    ("chance-no-k", lambda: metrics.chance("mutual_knn", 10), ValueError, "needs k"),
    ("chance-d-nan", lambda: metrics.chance("cka", 10, d_a=float("nan")), ValueError, "d_a"),
    ("chance-no-null", lambda: metrics.chance("rsa", 10), ValueError, "calibrate"),
    ("permutation-null-empty", lambda: metrics.permutation_p_value(0.1, []), ValueError, "empty"),
    ("rank-correlation-constant", lambda: metrics.rank_correlation([1, 1, 1], [1, 2, 3]), ValueError,
     "constant"),
    # --- config, world, zoo, data, features, models ----------------------------------------------------
    *[(f"setup-seed-{s!r}", lambda s=s: config.setup(seed=s), ValueError, "seed")
      for s in (1.5, True, -1, 2**32, None, "abc")],
    ("set-profile", lambda: config.set_profile("bogus"), ValueError, "unknown profile"),
    ("world-seed", lambda: world.sample(n=10, seed=1.5), ValueError, "seed"),
    ("world-n-bool", lambda: world.sample(n=True), ValueError, "n must be an integer"),
    ("world-n-0", lambda: world.sample(n=0), ValueError, "n must be between"),
    ("world-kernel", lambda: world.latent_kernel(np.ones((3, 2)), kind="bogus"), ValueError, "kind"),
    ("zoo-seed", lambda: zoo.TrainConfig(seed="x"), ValueError, "seed"),
    ("zoo-width", lambda: zoo.TrainConfig(width=True), ValueError, "width"),
    ("zoo-unknown-field", lambda: zoo.TrainConfig(bogus=1), TypeError, "bogus"),
    ("zoo-arch", lambda: zoo.build(zoo.TrainConfig(), arch="bogus"), ValueError, "unknown arch"),
    ("data-unknown", lambda: data.load_pairs("nonexistent"), ValueError, "unknown data set"),
    ("data-seed-none", lambda: data.load_pairs("world", n=5, seed=None), ValueError, "seed"),
    ("data-size-unknown", lambda: data.size("nonexistent"), ValueError, "unknown data set"),
    ("features-model", lambda: features.extract("not-a-model", ["x"]), ValueError, "unknown model"),
    ("features-clear-cache", lambda: features.clear_cache(model=3), ValueError, "unknown model"),
    ("models-unknown", lambda: models.get("not-a-model"), ValueError, "unknown model"),
]


@pytest.mark.parametrize("call,exc,phrase", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(call, exc, phrase):
    with pytest.raises(exc, match=phrase):
        call()


def test_case_count():
    """The size of the table above (reported in the issue's closing note)."""
    assert len({c[0] for c in CASES}) == len(CASES)      # unique ids
    assert len(CASES) >= 200, len(CASES)


# ------------------------------------------------------------------------------------------------
# documented values
# ------------------------------------------------------------------------------------------------
def test_duplicate_rows_with_determined_sets_give_a_value_that_ignores_row_order():
    # every row twice, unit rows (own duplicate first, cosine 1) and k odd: each set holds the own
    # duplicate and whole pairs, so the sets are determined and any joint row order gives one score
    a, b = metrics.prepare(DUP_A, q=1), metrics.prepare(DUP_B, q=1)
    ref = metrics.mutual_knn(a, b, k=5)
    for seed in range(5):
        p = np.random.default_rng(seed).permutation(40)
        assert metrics.mutual_knn(a[p], b[p], k=5) == ref
    with pytest.raises(ValueError, match="not determined"):     # k even splits a pair
        metrics.cycle_knn(a, b, k=4)


def test_mutual_knn_resolves_ties_in_expectation():
    """The tie rule of mutual k-NN: tied candidates count with their probability of being a neighbour."""
    assert metrics.mutual_knn(CONST, CONST, k=5) == pytest.approx(metrics.chance("mutual_knn", len(CONST), k=5))
    res = metrics.calibrate(CONST, CONST, "mutual_knn", k=5, permutations=19)
    assert res.p_value == 1.0 and res.calibrated == 0.0          # no structure: never significant
    a, b = metrics.prepare(DUP_A, q=1), metrics.prepare(DUP_B, q=1)
    ref = metrics.mutual_knn(a, b, k=4)                          # k even splits a pair: ties
    for seed in range(5):                                        # ... yet row order does not matter
        p = np.random.default_rng(seed).permutation(len(a))
        assert metrics.mutual_knn(a[p], b[p], k=4) == pytest.approx(ref, abs=1e-12)
    # Monte Carlo: break the ties by a tiny random jitter, many times; the mean converges to ref
    rng = np.random.default_rng(0)
    mc = np.mean([metrics.mutual_knn(a + 1e-9 * rng.normal(size=a.shape), b + 1e-9 * rng.normal(size=b.shape),
                                     k=4) for _ in range(400)])
    assert mc == pytest.approx(ref, abs=0.01)
    # the fast calibration null still equals recomputing on permuted rows
    res = metrics.calibrate(a, b, "mutual_knn", k=4, permutations=10, seed=2)
    rng = np.random.default_rng(2)
    again = [metrics.mutual_knn(a, b[rng.permutation(len(a))], k=4) for _ in range(10)]
    assert np.allclose(res.null, again)


def test_fast_calibration_null_equals_recomputing_on_permuted_rows():
    res = metrics.calibrate(A, B, "mutual_knn", k=5, permutations=20, seed=3)
    rng = np.random.default_rng(3)
    again = [metrics.mutual_knn(A, B[rng.permutation(40)], k=5) for _ in range(20)]
    assert np.allclose(res.null, again)


@pytest.mark.parametrize("scale", [1e20, 1e-20])
@pytest.mark.parametrize("metric", ["mutual_knn", "lcs_knn", "cka", "unbiased_cka", "cknna", "svcca", "rsa",
                                    "procrustes"])
def test_huge_and_tiny_float32_features_give_the_unscaled_value(metric, scale):
    a32, b32 = A.astype(np.float32), B.astype(np.float32)
    opts = OPTS.get(metric, {})
    expected = metrics.measure(a32, b32, metric, k=5, **opts)
    got = metrics.measure(a32 * np.float32(scale), b32 * np.float32(scale), metric, k=5, **opts)
    assert got == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("metric", ["cka", "unbiased_cka", "cknna", "rsa", "procrustes", "svcca", "mutual_knn"])
def test_float64_near_1e300_and_1e_minus_300(metric):
    opts = OPTS.get(metric, {})
    expected = metrics.measure(A, B, metric, k=5, **opts)
    for scale in (2.0**990, 2.0**-990):      # powers of two: the scaled input is exact
        assert metrics.measure(A * scale, B * scale, metric, k=5, **opts) == pytest.approx(expected, abs=1e-12)


def test_prepare_survives_huge_and_tiny_rows():
    expected = metrics.prepare(A.astype(np.float32), q=1)
    for scale in (1e20, 1e-20):
        got = metrics.prepare((A * scale).astype(np.float32), q=1)
        assert np.isfinite(got).all() and np.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("call,what", [
    (lambda a, b: metrics.cknna(a, b, k=5), "CKNNA"),
    (lambda a, b: metrics.rsa(a, b), "RSA"),
    (lambda a, b: metrics.cka(a, b, kernel="rbf", sigma="median"), "rbf CKA"),
])
def test_memory_is_estimated_before_allocating(monkeypatch, call, what):
    monkeypatch.setattr(_checks, "available_memory", lambda device=None: 10**4)   # 10 kB
    with pytest.raises(ValueError, match=rf"{what} with n=40 samples needs about .* GB .* at most n=\d+"):
        call(A, B)
    monkeypatch.setattr(_checks, "available_memory", lambda device=None: 10**9)
    assert math.isfinite(call(A, B))


def test_available_memory_reads_a_number():
    assert _checks.available_memory() > 0


# ------------------------------------------------------------------------------------------------
# invariances (hypothesis), on float64 and float32 inputs
# ------------------------------------------------------------------------------------------------
INVARIANT = ["mutual_knn", "cycle_knn", "cka", "unbiased_cka", "rsa", "procrustes", "svcca"]
ROTATION_INVARIANT = ["mutual_knn", "cycle_knn", "cka", "unbiased_cka", "rsa", "procrustes"]
PROPS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pair(seed, dtype):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(30, 5))
    b = a @ rng.normal(size=(5, 4)) + rng.normal(size=(30, 4))
    return a.astype(dtype), b.astype(dtype)


def _tol(dtype):
    return 1e-9 if dtype == np.float64 else 2e-4


@PROPS
@given(seed=st.integers(0, 10_000), dtype=st.sampled_from([np.float64, np.float32]),
       metric=st.sampled_from(INVARIANT))
def test_joint_row_permutation_changes_nothing(seed, dtype, metric):
    a, b = _pair(seed, dtype)
    p = np.random.default_rng(seed + 1).permutation(30)
    opts = OPTS.get(metric, {})
    assert metrics.measure(a[p], b[p], metric, k=4, **opts) == pytest.approx(
        metrics.measure(a, b, metric, k=4, **opts), abs=_tol(dtype))


@PROPS
@given(seed=st.integers(0, 10_000), dtype=st.sampled_from([np.float64, np.float32]),
       metric=st.sampled_from(INVARIANT), exponent=st.integers(-30, 30))
def test_isotropic_scaling_changes_nothing(seed, dtype, metric, exponent):
    a, b = _pair(seed, dtype)
    s = dtype(10.0 ** (exponent / 3))
    opts = OPTS.get(metric, {})
    assert metrics.measure(a * s, b, metric, k=4, **opts) == pytest.approx(
        metrics.measure(a, b, metric, k=4, **opts), abs=_tol(dtype) * 10)


@PROPS
@given(seed=st.integers(0, 10_000), dtype=st.sampled_from([np.float64, np.float32]),
       metric=st.sampled_from(ROTATION_INVARIANT))
def test_rotation_changes_nothing(seed, dtype, metric):
    a, b = _pair(seed, dtype)
    q = np.linalg.qr(np.random.default_rng(seed + 2).normal(size=(5, 5)))[0].astype(dtype)
    assert metrics.measure(a @ q, b, metric, k=4) == pytest.approx(metrics.measure(a, b, metric, k=4),
                                                                  abs=_tol(dtype) * 10)


def test_torch_and_numpy_float32_agree():
    a, b = _pair(0, np.float32)
    for metric in INVARIANT:
        opts = OPTS.get(metric, {})
        assert metrics.measure(torch.from_numpy(a), torch.from_numpy(b), metric, k=4, **opts) == \
            metrics.measure(a, b, metric, k=4, **opts)
