"""Tests of prhlib.limits (chapter 7's measurements)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from prhlib import limits, metrics, world


@pytest.fixture(scope="module")
def scenes():
    return world.sample(300, seed=3)


def test_visible_latent_drops_exactly_the_attribute_columns(scenes):
    names = world.latent_names()
    full = limits.visible_latent(scenes.z)
    assert np.array_equal(full, scenes.z)
    no_colour = limits.visible_latent(scenes.z, ("color",))
    assert no_colour.shape == (300, len(names) - 3)
    keep = [i for i, c in enumerate(names) if c not in ("L*", "a*", "b*")]
    assert np.array_equal(no_colour, scenes.z[:, keep])
    assert limits.visible_latent(scenes.z, "position").shape[1] == len(names) - 2


def test_visible_latent_rejects_bad_input(scenes):
    with pytest.raises(ValueError, match="unknown attribute"):
        limits.visible_latent(scenes.z, ("texture",))
    with pytest.raises(ValueError, match="nothing to compare"):
        limits.visible_latent(scenes.z, tuple(limits.ATTRIBUTE_COLUMNS))
    with pytest.raises(ValueError, match="names has"):
        limits.visible_latent(scenes.z, (), names=["a", "b"])
    with pytest.raises(ValueError, match="n x d"):
        limits.visible_latent(scenes.z[0])
    bad = scenes.z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        limits.visible_latent(bad)
    with pytest.raises(ValueError, match="no columns"):
        limits.visible_latent(np.ones((5, 3)), ("color",), names=["x", "y", "size"])


def test_scene_features_are_centred_unit_rows(scenes):
    f = limits.scene_features(scenes.z)
    assert np.allclose(np.linalg.norm(f, axis=1), 1)
    centred = scenes.z - scenes.z.mean(0)
    cos = centred @ centred.T / np.outer(np.linalg.norm(centred, axis=1), np.linalg.norm(centred, axis=1))
    assert np.allclose(f @ f.T, cos)
    with pytest.raises(ValueError, match="mean scene"):
        limits.scene_features(np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 2.0]]))


def test_ceiling_is_one_for_identical_views_and_falls_with_asymmetry(scenes):
    assert limits.ceiling(scenes.z, (), (), k=10) == pytest.approx(1.0)
    one = limits.ceiling(scenes.z, (), ("color",), k=10)
    two = limits.ceiling(scenes.z, (), ("color", "position"), k=10)
    assert 1.0 > one > two > metrics.chance("mutual_knn", n=300, k=10)
    # symmetric in the two observers
    assert limits.ceiling(scenes.z, ("color",), (), k=10) == pytest.approx(one)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(list(limits.ATTRIBUTE_COLUMNS)), st.integers(0, 2**16))
def test_ceiling_is_invariant_to_rescaling_the_hidden_scene(attribute, seed):
    """Cosine neighbourhoods of centred scenes do not change when Z is scaled by a positive constant."""
    z = world.sample(80, seed=seed).z
    assert limits.ceiling(3.7 * z, (), (attribute,), k=5) == pytest.approx(limits.ceiling(z, (), (attribute,), k=5))


def _grid():
    rows = []
    comp = {"t0": 0.1, "t1": 0.2, "t2": 0.3, "t3": 0.4}
    for metric, slope in (("rises", 1.0), ("falls", -1.0)):
        for v in ("v0", "v1"):
            for t, c in comp.items():
                rows.append(dict(metric=metric, vision=v, text=t, score=slope * c + (0.01 if v == "v1" else 0),
                                 calibrated=0.0))
    return pd.DataFrame(rows), comp


def test_competence_trend_signs_and_constant_scores():
    grid, comp = _grid()
    trend = limits.competence_trend(grid, comp, n_boot=300, permutations=300)
    assert trend.loc["rises", "rho_score"] > 0.8 and trend.loc["falls", "rho_score"] < -0.8
    for metric in ("rises", "falls"):   # the interval brackets the estimate; the trend is significant
        row = trend.loc[metric]
        assert row.rho_score_low <= row.rho_score <= row.rho_score_high
        assert row.p_score < 0.05
    assert trend.loc["rises", "rho_score_low"] > 0 and trend.loc["falls", "rho_score_high"] < 0
    # the same numbers as metrics.rank_correlation on the cells
    part = grid[grid.metric == "rises"]
    r = metrics.rank_correlation(part.text.map(comp), part.score, n_boot=300, permutations=300)
    assert trend.loc["rises", ["rho_score", "rho_score_low", "rho_score_high", "p_score"]].tolist() \
        == pytest.approx([r.estimate, r.ci_low, r.ci_high, r.p_value])
    assert trend.loc["rises", ["rho_calibrated", "rho_calibrated_low", "p_calibrated"]].isna().all()
    assert trend.loc["rises", "cells"] == 8


def test_competence_trend_validates():
    grid, comp = _grid()
    with pytest.raises(ValueError, match="no competence"):
        limits.competence_trend(grid, {"t0": 1.0})
    with pytest.raises(ValueError, match="lacks"):
        limits.competence_trend(grid.drop(columns="calibrated"), comp)
    with pytest.raises(ValueError, match="at least 3"):
        limits.competence_trend(grid.head(2), comp)


def test_rank_agreement_detects_same_and_reversed_orders():
    grid, _ = _grid()
    tau = limits.rank_agreement(grid, value="score")
    assert tau.loc["rises", "rises"] == 1.0
    assert tau.loc["rises", "falls"] == pytest.approx(tau.loc["falls", "rises"])
    assert tau.loc["rises", "falls"] < -0.5
    assert np.isnan(limits.rank_agreement(grid, value="calibrated").loc["rises", "falls"])
    with pytest.raises(ValueError, match="at least 3"):
        limits.rank_agreement(grid[grid.text.isin(["t0"])], value="score")
    with pytest.raises(ValueError, match="lacks"):
        limits.rank_agreement(grid, value="nope")


def test_calibrated_grid_separates_paired_from_unrelated_models():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 5))
    paired = [np.tanh(z @ rng.normal(size=(5, 16))), z @ rng.normal(size=(5, 8))]   # 2 layers
    unrelated = [rng.normal(size=(120, 12))]
    vision = {"v": [z @ rng.normal(size=(5, 10))]}
    grid = limits.calibrated_grid(vision, {"paired": paired, "noise": unrelated},
                                  metric_names=("mutual_knn", "cka"), k=5, permutations=30)
    assert len(grid) == 4 and set(grid.metric) == {"mutual_knn", "cka"}
    good = grid[grid.text == "paired"]
    bad = grid[grid.text == "noise"]
    assert (good.p_value <= 1 / 31 + 1e-12).all() and (good.calibrated > 0).all()
    assert (bad.calibrated < good.calibrated.min()).all()
    assert set(grid.layer_text[grid.text == "paired"]) <= {0, 1}
    with pytest.raises(ValueError, match="unknown metric"):
        limits.calibrated_grid(vision, {"x": unrelated}, metric_names=("nope",))
    with pytest.raises(ValueError, match="at least one"):
        limits.calibrated_grid({}, {"x": unrelated})


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 9))
def test_expected_mutual_knn_equals_mutual_knn_without_ties(seed, k):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(40, 3))
    assert limits.expected_mutual_knn(a, b, k=k) == pytest.approx(metrics.mutual_knn(a, b, k=k), abs=1e-12)


def test_knn_membership_rows_and_ties():
    x = np.repeat(np.eye(3), [4, 5, 6], axis=0)          # three groups of identical rows
    p = limits.knn_membership(x, k=2)
    assert np.allclose(p.sum(axis=1), 2) and np.allclose(np.diag(p), 0)
    # a row of the first group: its 3 twins share the 2 places equally
    assert np.allclose(p[0, 1:4], 2 / 3) and np.allclose(p[0, 4:], 0)
    with pytest.raises(ValueError, match="k must be"):
        limits.knn_membership(x, k=15)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**16))
def test_expected_mutual_knn_with_ties_does_not_depend_on_sample_order(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 4, size=30)
    a = np.eye(4)[groups]                                  # heavy ties
    b = a + 0.3 * rng.normal(size=a.shape)
    perm = rng.permutation(30)
    assert limits.expected_mutual_knn(a, b, k=5) == pytest.approx(limits.expected_mutual_knn(a[perm], b[perm], k=5))


def test_ceiling_with_a_discrete_view_is_its_random_tie_break_expectation(scenes):
    """Seeing only the shape, an observer ties every same-shape scene: the ceiling is what random picks achieve."""
    shape_only = limits.ceiling(scenes.z, (), ("color", "position", "size"), k=10)
    rng = np.random.default_rng(0)
    full = limits.scene_features(scenes.z)
    nb_full = [set(np.argsort(-(full @ full[i]))[1:11]) for i in range(300)]
    shapes = scenes.z[:, :4].argmax(1)
    draws = []
    for _ in range(20):
        hits = [len(nb_full[i] & set(rng.choice(np.flatnonzero((shapes == shapes[i]) & (np.arange(300) != i)),
                                                10, replace=False))) / 10 for i in range(300)]
        draws.append(np.mean(hits))
    assert shape_only == pytest.approx(np.mean(draws), abs=0.01)


def test_reference_observer_keeps_its_old_name_and_is_beaten_on_position_alone(scenes):
    assert limits.ceiling is limits.reference_observer
    # not a bound: an RBF view (random Fourier features) of the visible position beats the cosine observer
    pos = limits.visible_latent(scenes.z, ("shape", "color", "size"))
    rng = np.random.default_rng(0)
    gaps = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    w = rng.normal(size=(2, 2000)) / np.median(gaps[gaps > 0])
    rff = limits.scene_features(np.cos(pos @ w + rng.uniform(0, 2 * np.pi, 2000)))
    full = limits.scene_features(scenes.z)
    ref = limits.reference_observer(scenes.z, (), ("shape", "color", "size"), k=10)
    assert limits.expected_mutual_knn(full, rff, k=10) > ref


def test_grouped_mutual_knn_with_one_item_per_scene_is_mutual_knn():
    rng = np.random.default_rng(3)
    a = limits.scene_features(rng.normal(size=(60, 5)))
    b = limits.scene_features(a + 0.5 * rng.normal(size=a.shape))
    ids = np.arange(60)
    per = limits.grouped_mutual_knn(limits.scene_neighbour_sets(a, ids, 60, k=5),
                                    limits.scene_neighbour_sets(b, ids, 60, k=5), ids)
    assert per.mean() == pytest.approx(metrics.mutual_knn(a, b, k=5))


def test_grouped_mutual_knn_duplicated_items_and_relabelling():
    rng = np.random.default_rng(4)
    a = limits.scene_features(rng.normal(size=(40, 4)))
    b = limits.scene_features(a + 0.8 * rng.normal(size=a.shape))
    ids = np.arange(40)
    scene_sets = limits.scene_neighbour_sets(a, ids, 40, k=4)
    one = limits.grouped_mutual_knn(scene_sets, limits.scene_neighbour_sets(b, ids, 40, k=4), ids)
    # three identical copies of every caption: the same neighbour scenes, the same score
    owner = np.tile(ids, 3)
    many = limits.grouped_mutual_knn(scene_sets, limits.scene_neighbour_sets(np.tile(b, (3, 1)), owner, 40,
                                                                             k=4), owner)
    assert many == pytest.approx(one)
    # relabelling every scene consistently on both sides permutes the per-scene scores
    p = rng.permutation(40)
    inv = np.argsort(p)
    moved = limits.grouped_mutual_knn(p[scene_sets][inv], p[limits.scene_neighbour_sets(b, ids, 40, k=4)], p)
    assert moved[p] == pytest.approx(one)


def test_grouped_mutual_knn_rejects_a_scene_without_items():
    x = limits.scene_features(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(ValueError, match="at least one row"):
        limits.scene_neighbour_sets(x, np.array([0] * 5 + [1] * 5), 3, k=1)
    with pytest.raises(ValueError, match="one scene id per row"):
        limits.scene_neighbour_sets(x, np.arange(9), 10, k=2)


def test_error_consistency_independent_errors_give_kappa_near_zero():
    rng = np.random.default_rng(0)
    a, b = rng.random(4000) < 0.3, rng.random(4000) < 0.2     # independent, different accuracies
    r = limits.error_consistency(a, b, n_boot=500, seed=1)
    assert r["ci_low"] <= 0 <= r["ci_high"] and abs(r["kappa"]) < 0.05
    assert r["expected"] == pytest.approx(0.7 * 0.8 + 0.3 * 0.2, abs=0.02)
    assert r["observed"] == pytest.approx(np.mean(a == b)) and r["n"] == 4000


def test_error_consistency_identical_opposite_and_partial_errors():
    rng = np.random.default_rng(2)
    a = rng.random(500) < 0.3
    same = limits.error_consistency(a, a.copy(), n_boot=200)
    assert same["kappa"] == pytest.approx(1.0) and same["observed"] == 1.0
    opposite = limits.error_consistency(a, ~a, n_boot=200)
    assert opposite["kappa"] < -0.5                   # errors that avoid each other
    # b copies a on half the items and is independent elsewhere: kappa strictly between 0 and 1
    b = np.where(rng.random(500) < 0.5, a, rng.random(500) < 0.3)
    mid = limits.error_consistency(a, b, n_boot=500, seed=3)
    assert 0 < mid["ci_low"] <= mid["kappa"] <= mid["ci_high"] < 1
    # 0/1 integers are accepted and the result is deterministic
    again = limits.error_consistency(a.astype(int), b.astype(int), n_boot=500, seed=3)
    assert again == mid


@pytest.mark.parametrize("a, b, match", [
    (np.zeros(10, bool), np.zeros(9, bool), "same items"),
    (np.zeros((5, 2), bool), np.zeros((5, 2), bool), "1-D"),
    (np.array([0, 2, 1]), np.array([0, 1, 1]), "booleans"),
    (np.zeros(10, bool), np.zeros(10, bool), "undefined"),
])
def test_error_consistency_rejects_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        limits.error_consistency(a, b)


def test_error_consistency_rejects_bad_options():
    a = np.arange(10) % 2 == 0
    with pytest.raises(ValueError, match="n_boot"):
        limits.error_consistency(a, a, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        limits.error_consistency(a, a, alpha=1.5)


def test_probe_errors_match_the_probe_accuracy():
    from prhlib import crossmodal

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    x = rng.normal(size=(120, 6)) + 1.5 * np.eye(6)[y]
    errors = limits.probe_errors(x, y, seed=0)
    assert errors.dtype == bool and errors.shape == (120,)
    # same probe and folds; accuracy over all items equals the fold mean when folds are equal-sized
    assert 1 - errors.mean() == pytest.approx(crossmodal.probe_accuracy(x, y, seed=0))
    assert errors.mean() < 0.3                        # the classes are separable enough
    noise = limits.probe_errors(rng.normal(size=(120, 6)), y, seed=0)
    assert noise.mean() > 0.4                         # chance is 2/3 errors
    with pytest.raises(ValueError, match="one label per row"):
        limits.probe_errors(x, y[:-1])
    with pytest.raises(ValueError, match="two classes"):
        limits.probe_errors(x, np.zeros(120))


def test_knn_membership_and_expected_mutual_knn_are_the_tie_rule_of_mutual_knn():
    """One tie rule: the weights knn_membership gives are those mutual_knn counts, per sample."""
    rng = np.random.default_rng(1)
    a = np.eye(4)[rng.integers(0, 4, size=30)]               # heavy ties
    b = a + 0.3 * rng.normal(size=a.shape)
    pa, pb = limits.knn_membership(a, k=5), limits.knn_membership(b, k=5)
    assert pa.dtype == np.float64 and set(np.unique(pb)) == {0.0, 1.0}
    np.testing.assert_allclose((pa * pb).sum(axis=1) / 5, metrics.per_sample_scores(a, b, k=5), atol=1e-12)
    assert limits.expected_mutual_knn(a, b, k=5) == metrics.mutual_knn(a, b, k=5)
    # a tie is equality up to the rounding of a dot product: 1e-12 apart is not a tie
    x = np.array([[1.0, 0.0], [0.5, 0.0], [0.5 + 1e-12, 0.0], [-1.0, 0.0]])
    assert limits.knn_membership(x, k=1)[0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert limits.knn_membership(x[[0, 1, 1, 3]], k=1)[0].tolist() == [0.0, 0.5, 0.5, 0.0]
