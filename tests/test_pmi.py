"""Tests of prhlib.pmi: the PMI estimator, the exact PMI of the toy law, the learner and the kernel tools."""

import dataclasses

import numpy as np
import pytest

from prhlib import pmi

SIZES = (4, 3)


@pytest.fixture(scope="module")
def law():
    return pmi.window_joint(pmi.torus_chain(SIZES, moves=0.5, teleport=0.1), window=2)


def _colour_chapter_pmi(counts, smoothing=0.0):
    """The colour chapter's estimator before it moved here (prhlib.colors.pmi at commit 8399fa9)."""
    table = np.asarray(counts, dtype=float) + smoothing
    p = table / table.sum()
    marginal = p.sum(axis=1)
    return np.log(p) - np.log(marginal)[:, None] - np.log(marginal)[None, :]


def test_from_counts_is_the_colour_estimator():
    """Bit-identical to the colour chapter's former colors.pmi on symmetric co-occurrence tables."""
    rng = np.random.default_rng(0)
    c = rng.integers(0, 40, (9, 9)).astype(float)
    c = c + c.T + 1
    assert np.array_equal(pmi.from_counts(c), _colour_chapter_pmi(c))
    assert np.array_equal(pmi.from_counts(c, smoothing=0.5), _colour_chapter_pmi(c, smoothing=0.5))


def test_from_counts_uses_row_and_column_marginals():
    c = np.array([[4.0, 1.0, 2.0], [1.0, 3.0, 5.0]])
    p = c / c.sum()
    expected = np.log(p / np.outer(p.sum(1), p.sum(0)))
    np.testing.assert_allclose(pmi.from_counts(c), expected, rtol=1e-12)


def test_exact_pmi_of_independent_law_is_zero():
    joint = np.outer([0.2, 0.3, 0.5], [0.6, 0.4])
    np.testing.assert_allclose(pmi.exact(joint), 0.0, atol=1e-12)


def test_joint_is_a_symmetric_law(law):
    assert law.shape == (12, 12)
    assert abs(law.sum() - 1) < 1e-12 and np.allclose(law, law.T)
    np.testing.assert_allclose(law.sum(1), 1 / 12, atol=1e-12)  # the torus walk is doubly stochastic


def test_exact_pmi_matches_a_monte_carlo_estimate(law):
    """200k sampled pairs of the chain recover the exact PMI within 0.1 nats in every cell."""
    t = pmi.torus_chain(SIZES, moves=0.5, teleport=0.1)
    pairs = pmi.sample_pairs(t, window=2, n_pairs=200_000, seed=3)
    estimate = pmi.from_counts(pmi.cooccurrence_counts(pairs, 12))
    exact = pmi.exact(law)
    assert np.abs(estimate - exact).max() < 0.1
    # the check can fail: the law of a different window is far from the same samples
    other = pmi.exact(pmi.window_joint(t, window=5))
    assert np.abs(estimate - other).max() > 0.3


def test_linear_softmax_learner_recovers_pmi(law):
    """The optimum of the population InfoNCE is S = PMI + c; a full-rank bilinear learner gets within
    0.05 nats of it in every cell (after removing the constant)."""
    s = pmi.fit_bilinear(law, steps=3000, seed=0)
    gap = s - pmi.exact(law)
    assert np.abs(gap - gap.mean()).max() < 0.05
    # a learner trained on another law does not fit this one
    other = pmi.fit_bilinear(np.full((12, 12), 1 / 144), steps=300, seed=0)
    gap_other = other - pmi.exact(law)
    assert np.abs(gap_other - gap_other.mean()).max() > 0.5


def test_lossy_observation_converges_to_the_pmi_of_what_it_keeps(law):
    kept, labels = pmi.marginal_law(law, SIZES, keep=(0,))
    assert kept.shape == (4, 4) and abs(kept.sum() - 1) < 1e-12
    lifted = pmi.exact(kept)[labels][:, labels]
    assert lifted.shape == (12, 12)
    # states that differ only in the dropped factor are indistinguishable
    assert np.allclose(lifted[0], lifted[1])
    assert not np.allclose(pmi.exact(law)[0], pmi.exact(law)[1])


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, -1.0], [2.0, 3.0]]), "non-negative"),
    (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN"),
    (np.ones(4), "2-D"),
    (np.array([[1.0, 0.0], [0.0, 0.0]]), "zero marginal"),
    (np.array([[1.0, 0.0], [2.0, 3.0]]), "smoothing > 0"),
])
def test_from_counts_rejects_bad_tables(bad, match):
    with pytest.raises(ValueError, match=match):
        pmi.from_counts(bad)


def test_from_counts_smoothing_fixes_empty_cells_and_is_validated():
    assert np.all(np.isfinite(pmi.from_counts([[1.0, 0.0], [0.0, 0.0]], smoothing=1.0)))
    with pytest.raises(ValueError, match="smoothing"):
        pmi.from_counts([[1.0, 2.0], [2.0, 1.0]], smoothing=-1)


def test_exact_rejects_non_laws():
    with pytest.raises(ValueError, match="sum to 1"):
        pmi.exact([[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="-inf"):
        pmi.exact([[0.5, 0.0], [0.0, 0.5]])


def test_learner_config_and_train_validate():
    with pytest.raises(ValueError, match="unknown rule"):
        pmi.LearnerConfig(rule="hebb")
    with pytest.raises(ValueError, match="unknown activation"):
        pmi.LearnerConfig(activation="gelu")
    with pytest.raises(ValueError, match="pairs"):
        pmi.train(np.zeros((5, 3)), np.array([[0, 7]]), pmi.LearnerConfig(steps=1), cache=False)


def test_feedback_alignment_sends_errors_through_the_fixed_matrix():
    import torch
    layer = pmi.FALinear(3, 2)
    x = torch.randn(4, 3, requires_grad=True)
    layer(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones((4, 2)) @ layer.feedback.numpy(), rtol=1e-6)
    assert not np.allclose(x.grad.numpy(), np.ones((4, 2)) @ layer.weight.detach().numpy())


def test_training_is_deterministic_and_learns_the_pmi(tmp_path, monkeypatch, law):
    monkeypatch.setenv("PRH_CACHE_DIR", str(tmp_path))
    t = pmi.torus_chain(SIZES, moves=0.5, teleport=0.1)
    pairs = pmi.sample_pairs(t, window=2, n_pairs=5000, seed=0)
    obs = pmi.random_observer(12, 16, seed=1)
    cfg = pmi.LearnerConfig(width=16, steps=150, batch=128, lr=1e-2)
    a = pmi.train(obs, pairs, cfg, checkpoints=(0, 150))
    b = pmi.train(obs, pairs, cfg, checkpoints=(0, 150), cache=False)
    assert np.array_equal(a["embedding"], b["embedding"])
    assert len(list(tmp_path.glob("pmi/*.npz"))) == 1
    c = pmi.train(obs, pairs, cfg, checkpoints=(0, 150))  # from the cache
    assert np.array_equal(a["embedding"], c["embedding"])
    target = pmi.exact(law)
    after = pmi.spearman(pmi.kernel(a["embedding"]), target)
    before = pmi.spearman(pmi.kernel(a["snapshots"][0]), target)
    assert after > 0.8 and after > before + 0.3


def test_compare_gives_interval_and_null():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5))
    k = x @ x.T
    r = pmi.compare(k, k + 0.5 * rng.standard_normal(k.shape), n_boot=50, permutations=50)
    assert r.ci_low <= r.estimate <= r.ci_high and r.p_value < 0.05 and r.estimate > r.null_q95
    y = rng.standard_normal((30, 5))
    r0 = pmi.compare(k, y @ y.T, n_boot=50, permutations=50)
    assert r0.p_value > 0.05 or r0.estimate < r.estimate
    with pytest.raises(ValueError, match="square"):
        pmi.compare(k, k[:5])


def test_embedding_reproduces_the_positive_part_and_affine_fit():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 3))
    k = x @ x.T
    e = pmi.embedding(k)
    np.testing.assert_allclose(e @ e.T, k, atol=1e-9)
    assert pmi.negative_share(k) < 1e-12 and pmi.negative_share(-k) > 0.99
    fit = pmi.affine_fit(2 * k + 3, k)
    assert abs(fit["slope"] - 2) < 1e-9 and abs(fit["offset"] - 3) < 1e-9 and fit["r2"] > 0.999


def test_checkpoints_are_the_embeddings_after_that_many_steps():
    """The shared loop yields after each update: the snapshot at step s is what s steps give."""
    t = pmi.torus_chain(SIZES)
    pairs = pmi.sample_pairs(t, window=2, n_pairs=500, seed=0)
    obs = pmi.random_observer(12, 8, seed=1)
    cfg = pmi.LearnerConfig(width=8, steps=6, batch=32)
    full = pmi.train(obs, pairs, cfg, checkpoints=(0, 3, 6), cache=False)
    short = pmi.train(obs, pairs, dataclasses.replace(cfg, steps=3), cache=False)
    assert full["checkpoints"].tolist() == [0, 3, 6] and len(full["loss"]) == 6
    assert np.array_equal(full["snapshots"][1], short["embedding"])
    assert np.array_equal(full["snapshots"][2], full["embedding"])
    assert np.array_equal(full["loss"][:3], short["loss"])


def test_a_diverging_learner_raises():
    pairs = pmi.sample_pairs(pmi.torus_chain(SIZES), window=2, n_pairs=200, seed=0)
    obs = pmi.random_observer(12, 4, seed=1)
    with pytest.raises(RuntimeError, match="training diverged.*lower lr"):
        pmi.train(obs, pairs, pmi.LearnerConfig(width=8, steps=20, batch=16, lr=1e30), cache=False)
