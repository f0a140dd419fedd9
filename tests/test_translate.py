"""Unsupervised translation between two spaces (prhlib.translate)."""

import numpy as np
import pytest
from scipy import stats

from prhlib import translate as T


def _space(n=300, d=16, seed=0):
    """Gaussian features with a decaying spectrum (distinct principal directions)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.linspace(2.0, 0.5, d)


def _rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_rotation_plus_noise_is_recovered_without_pairs():
    a = _space()
    rng = np.random.default_rng(1)
    b = a @ _rotation(16, 2) + 0.01 * rng.normal(size=a.shape)
    shuffled, truth = T.hide_pairing(b, seed=3)
    res = T.translate(a, shuffled, dim=16, m=30, restarts=2, seed=0)
    scores = T.retrieval_scores(res.mapped, res.b, truth)
    assert scores["top1"] > 0.95
    assert scores["cosine"] > 0.95
    assert (res.pairing == truth).mean() > 0.95


def test_independent_spaces_stay_at_chance():
    n = 300
    a, b = _space(n, seed=0), _space(n, seed=1)
    shuffled, truth = T.hide_pairing(b, seed=3)
    res = T.translate(a, shuffled, dim=16, m=30, restarts=3, seed=0)
    top1 = T.retrieval_scores(res.mapped, res.b, truth)["top1"]
    hits = round(top1 * n)
    assert hits <= stats.binom.ppf(0.999, n, 1 / n)   # chance is 1/n: one hit expected
    for w in res.restart_rotations:                    # no restart finds the pairing either
        assert T.retrieval_scores(res.a @ w, res.b, truth)["top1"] * n <= stats.binom.ppf(0.999, n, 1 / n)


def test_hide_pairing_truth_points_to_the_partner():
    b = _space(50)
    shuffled, truth = T.hide_pairing(b, seed=5)
    np.testing.assert_array_equal(shuffled[truth], b)
    assert not np.array_equal(shuffled, b)


def test_retrieval_scores_and_null():
    x = T.standardise(_space(200), dim=8)
    truth = np.arange(200)
    s = T.retrieval_scores(x, x, truth)
    assert s["top1"] == 1.0 and s["top10"] == 1.0 and s["cosine"] == pytest.approx(1.0)
    null = T.permutation_null(x, x, truth, permutations=50, seed=0)
    assert null.shape == (50, 3)
    assert null["top1"].mean() < 0.05 and null["top10"].mean() < 0.2


def test_supervised_map_recovers_exact_rotation():
    a = T.standardise(_space(), dim=16)
    b = a @ _rotation(16, 4)
    w = T.supervised_map(a, b, np.arange(len(a)))
    np.testing.assert_allclose(a @ w, b, atol=1e-8)


def test_profile_is_rotation_invariant():
    a = T.standardise(_space(), dim=16)
    np.testing.assert_allclose(T.similarity_profile(a, 20), T.similarity_profile(a @ _rotation(16, 6), 20),
                               atol=1e-6)


def test_deterministic():
    a, b = _space(seed=0), _space(seed=1)
    r1, r2 = T.translate(a, b, dim=8, restarts=2, seed=4), T.translate(a, b, dim=8, restarts=2, seed=4)
    np.testing.assert_array_equal(r1.rotation, r2.rotation)


@pytest.mark.parametrize("kwargs, message", [
    (dict(b=np.zeros((40, 5))), "same items"),
    (dict(m=60), "m must be between"),
    (dict(dim=0), "dim must be between"),
    (dict(method="greedy"), "method must be one of"),
    (dict(keep=0.0), "keep must be"),
    (dict(restarts=0), "restarts must be"),
])
def test_bad_arguments(kwargs, message):
    args = dict(a=_space(50, 5), b=_space(50, 5, seed=1), m=10)
    args.update(kwargs)
    a, b = args.pop("a"), args.pop("b")
    with pytest.raises(ValueError, match=message):
        T.translate(a, b, **args)


def test_nan_is_rejected():
    a = _space(50, 5)
    a[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        T.translate(a, _space(50, 5, seed=1))


def test_truth_must_be_a_permutation():
    x = T.standardise(_space(50), dim=4)
    with pytest.raises(ValueError, match="permutation"):
        T.retrieval_scores(x, x, np.zeros(50, dtype=int))
