"""prhlib.crossmodal: the chapter-5 experiments on synthetic pairs with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

from prhlib import crossmodal as cm
from prhlib import metrics


def paired(n=150, m=4, seed=0, noise=0.1):
    """Two views of a shared latent z (different widths, random linear maps plus noise) and an unrelated one."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, m))
    a = z @ rng.normal(size=(m, 24)) + noise * rng.normal(size=(n, 24))
    b = np.tanh(z @ rng.normal(size=(m, 16))) + noise * rng.normal(size=(n, 16))
    c = rng.normal(size=(n, 16))
    return a, b, c


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
def test_alignment_grid_separates_related_from_unrelated_pairs():
    a, b, c = paired()
    layers_a = np.stack([a, a + np.random.default_rng(1).normal(size=a.shape)], axis=1)  # n x 2 x 24
    grid = cm.alignment_grid({"vision": layers_a}, {"text": [b], "noise": [c]}, k=5, permutations=60)
    assert list(grid.columns) == ["vision", "text", "score", "calibrated", "threshold", "p_value",
                                  "layer_vision", "layer_text", "chance"]
    related = grid.set_index("text").loc["text"]
    unrelated = grid.set_index("text").loc["noise"]
    assert related.calibrated > 0.2 and related.p_value <= 1 / 61 + 1e-12
    assert related.layer_vision == 0  # the clean layer wins
    assert unrelated.calibrated < 0.05 and unrelated.score < related.score
    assert grid.chance.iloc[0] == pytest.approx(5 / 149)
    with pytest.raises(ValueError):
        cm.alignment_grid({}, {"text": [b]})
    cka = cm.alignment_grid({"vision": layers_a}, {"text": [b], "noise": [c]}, metric="cka", k=None,
                            permutations=20)
    assert cka.chance.isna().all()  # the measured threshold is the reference for CKA
    assert cka.score.iloc[0] > cka.threshold.iloc[0] and cka.calibrated.iloc[1] < cka.calibrated.iloc[0]


def test_probe_accuracy_finds_linear_classes_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 40)
    x = rng.normal(size=(160, 20))
    x[np.arange(160), y] += 4  # each class shifts its own feature
    assert cm.probe_accuracy(x, y) > 0.95
    noise = rng.normal(size=(160, 20))
    assert cm.probe_accuracy(noise, y) < 0.45
    groups = np.arange(160) // 2
    assert cm.probe_accuracy(x, y, groups=groups) > 0.95
    assert cm.majority_rate([0, 0, 1, 2]) == 0.5
    with pytest.raises(ValueError, match="two classes"):
        cm.probe_accuracy(x, np.zeros(160))
    with pytest.raises(ValueError, match="same number of rows"):
        cm.probe_accuracy(x, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        cm.probe_accuracy(np.full((160, 2), np.nan), y)
    with pytest.raises(ValueError, match="folds"):
        cm.probe_accuracy(x, y, folds=1)


# ---------------------------------------------------------------------------------------------
def test_query_mutual_knn_equals_the_full_metric_when_every_sample_is_a_query():
    a, b, _ = paired(n=80)
    a, b = unit(a), unit(b)
    for k in (1, 5, 10):
        assert cm.query_mutual_knn(a, b, 80, k) == pytest.approx(metrics.mutual_knn(a, b, k=k))
    assert cm.query_mutual_knn(a, a, 10, 5) == 1.0
    with pytest.raises(ValueError, match="k="):
        cm.query_mutual_knn(a, b, 10, 80)
    with pytest.raises(ValueError, match="n_queries"):
        cm.query_mutual_knn(a, b, 0, 5)
    with pytest.raises(ValueError, match="same number of rows"):
        cm.query_mutual_knn(a, b[:-1], 10, 5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 8))
def test_query_mutual_knn_is_invariant_to_rotations_and_to_reordering_the_gallery(seed, k):
    a, b, _ = paired(n=40, seed=seed)
    a, b = unit(a), unit(b)
    q = 12
    base = cm.query_mutual_knn(a, b, q, k)
    rot = ortho_group.rvs(b.shape[1], random_state=seed)
    assert cm.query_mutual_knn(a, b @ rot, q, k) == pytest.approx(base)
    perm = np.concatenate([np.arange(q), q + np.random.default_rng(seed).permutation(40 - q)])
    assert cm.query_mutual_knn(a[perm], b[perm], q, k) == pytest.approx(base)


def test_gallery_curve_layout_chance_and_extremes():
    a, b, c = paired(n=200)
    a, b, c = unit(a), unit(b), unit(c)
    df = cm.gallery_curve(a, b, n_queries=20, sizes=[20, 50, 200], ks=(1, 10, "n/100"), repeats=2)
    assert len(df) == 3 * 3 * 2
    np.testing.assert_allclose(df.chance, df.k / (df["size"] - 1))
    assert set(df[df.k_rule == "k = n/100"].k) == {1, 2}  # round(20/100) -> 1 (at least 1), 200/100 -> 2
    same = cm.gallery_curve(a, a, 20, [50, 200], repeats=1)
    assert (same.score == 1).all()
    # unrelated data sit near chance; related data far above it
    noise = cm.gallery_curve(a, c, 50, [200], ks=(10,), repeats=3).score.mean()
    real = cm.gallery_curve(a, b, 50, [200], ks=(10,), repeats=3).score.mean()
    assert noise < 0.15 < real
    with pytest.raises(ValueError, match="gallery size"):
        cm.gallery_curve(a, b, 20, [10, 50])
    with pytest.raises(ValueError, match="k must be"):
        cm.gallery_curve(a, b, 20, [50], ks=("n/10",))


# ---------------------------------------------------------------------------------------------
def test_chance_topk_matches_enumeration():
    for m, c, t in [(6, 1, 1), (6, 2, 3), (7, 3, 2), (5, 5, 1)]:
        hits = sum(any(x < c for x in ranking[:t]) for ranking in itertools.permutations(range(m)))
        assert cm.chance_topk(m, c, t) == pytest.approx(hits / math.factorial(m))
    with pytest.raises(ValueError):
        cm.chance_topk(3, 0, 1)


def test_rank_accuracy_counts_equivalent_answers():
    sims = np.eye(4)
    out = cm.rank_accuracy(sims, [0, 1, 2, 3], [0, 1, 2, 3], tops=(1, 2))
    assert out["top1"] == 1.0 and out["median_rank"] == 1.0 and out["chance_top1"] == 0.25
    worst = cm.rank_accuracy(-np.eye(4), [0, 1, 2, 3], [0, 1, 2, 3])
    assert worst["top1"] == 0.0 and worst["median_rank"] == 4.0
    # query 0 retrieves candidate 1, which has the same caption: correct
    dup = cm.rank_accuracy(np.array([[0.0, 1.0, 0.2]]), ["frog"], ["frog", "frog", "cat"])
    assert dup["top1"] == 1.0 and dup["chance_top1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="shape"):
        cm.rank_accuracy(np.eye(3), [0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="no correct"):
        cm.rank_accuracy(np.eye(2), [0, 5], [0, 1])


def test_retrieval_through_a_linear_map_and_its_shuffled_control():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 30))
    y = x @ rng.normal(size=(30, 20)) + 0.05 * rng.normal(size=(300, 20))
    ids = np.arange(300)
    out = cm.retrieval(x, y, ids, seed=1)
    assert out["n_train"] == out["n_test"] == 150
    assert out["x_to_y"]["top1"] > 0.9 and out["y_to_x"]["top1"] > 0.9
    assert out["sims"].shape == (150, 150) and len(out["test_index"]) == 150
    ctrl = cm.retrieval(x, y, ids, seed=1, shuffle_train=True)
    assert ctrl["x_to_y"]["top5"] < 0.15  # chance: 5/150
    again = cm.retrieval(x, y, ids, seed=1)
    assert again["x_to_y"] == out["x_to_y"]
    with pytest.raises(ValueError, match="train_fraction"):
        cm.retrieval(x, y, ids, train_fraction=1.0)
    with pytest.raises(ValueError, match="all-zero"):
        cm.retrieval(np.zeros((10, 3)), y[:10], ids[:10])


def test_last_layer():
    f = np.arange(24, dtype=float).reshape(2, 3, 4)
    np.testing.assert_array_equal(cm.last_layer(f), f[:, -1])
    np.testing.assert_array_equal(cm.last_layer([f[:, 0], f[:, 1, :2]]), f[:, 1, :2])
    with pytest.raises(ValueError):
        cm.last_layer(np.zeros((2, 3)))


def test_thread_limit_restores_the_thread_count():
    import torch

    from prhlib._threads import limited

    assert not hasattr(cm, "single_thread")          # no thread policy in the public API
    before = torch.get_num_threads()
    with limited(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), limited(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
def test_definition_matching():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(50, 8))
    assert cm.definition_matching(t, t + 0.01 * rng.normal(size=t.shape)) == 1.0
    z = t.copy(); z[:5] = 0
    assert cm.definition_matching(z, t) == pytest.approx(0.9)
    acc = np.mean([cm.definition_matching(rng.normal(size=(50, 8)), rng.normal(size=(50, 8)))
                   for _ in range(50)])
    assert acc < 0.06                      # chance is 1/50
    with pytest.raises(ValueError, match="same shape"):
        cm.definition_matching(t, t[:10])


def test_alignment_grid_paper_era_candidates():
    rng = np.random.default_rng(0)
    v = {"v": [rng.normal(size=(60, 4)), rng.normal(size=(60, 6))]}
    t = {"t": [rng.normal(size=(60, 5))]}
    plain = cm.alignment_grid(v, t, k=5, permutations=9)
    era = cm.alignment_grid(v, t, k=5, permutations=9, include_concat=True)
    scores = metrics.layer_scores(v["v"], t["t"], k=5, include_concat=True)
    assert era.score.iloc[0] == pytest.approx(max(0.0, scores.max()))
    assert era.score.iloc[0] >= plain.score.iloc[0]
    assert era.layer_vision.iloc[0] >= -1 and plain.layer_vision.iloc[0] >= 0


def test_query_mutual_knn_follows_the_tie_rule_of_mutual_knn():
    """Duplicate rows (a caption shared by several images) tie at the k-th place: each query counts
    every tied candidate with its probability, as mutual_knn does, whatever the order of the rows."""
    rng = np.random.default_rng(0)
    a = unit(np.eye(6)[rng.integers(0, 6, size=60)])        # six distinct rows, ten copies each
    b = unit(rng.normal(size=(60, 5)))
    per_query = metrics.per_sample_scores(a, b, "mutual_knn", k=5)
    assert cm.query_mutual_knn(a, b, 60, 5) == pytest.approx(metrics.mutual_knn(a, b, k=5), abs=1e-12)
    assert cm.query_mutual_knn(a, b, 20, 5) == pytest.approx(per_query[:20].mean(), abs=1e-12)
    assert cm.query_mutual_knn(b, a, 20, 5) == pytest.approx(per_query[:20].mean(), abs=1e-12)
    for seed in range(3):                                    # reorder the gallery, hence the tied rows
        perm = np.concatenate([np.arange(20), 20 + np.random.default_rng(seed).permutation(40)])
        assert cm.query_mutual_knn(a[perm], b[perm], 20, 5) == pytest.approx(per_query[:20].mean(), abs=1e-12)
