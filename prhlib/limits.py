r"""Measurements behind the critiques of chapter 7: what the hypothesis does not claim and where it breaks.

:func:`visible_latent`
    The part of the toy world's hidden scene that a modality can express.
:func:`scene_features`
    A hidden scene as features for the paper's protocol (centred, unit rows).
:func:`knn_membership`
    Probability that one sample is among another's k nearest neighbours, ties broken at random.
:func:`expected_mutual_knn`
    Mutual k-NN with ties broken at random, in expectation (representations with repeated rows).
:func:`reference_observer` (alias :func:`ceiling`)
    Mutual k-NN between two reference observers that see different attributes of the hidden scene: a
    yardstick for cross-modal alignment under information asymmetry, not an upper bound.
:func:`scene_neighbour_sets`, :func:`grouped_mutual_knn`
    Mutual k-NN when each scene has several captions and neighbours are counted over scenes
    (many-to-many pairing).
:func:`calibrated_grid`
    Raw and maxT-calibrated best-layer scores of every (vision, text) model pair for several metrics.
:func:`competence_trend`
    Does alignment rise with competence? Spearman's rho of raw and calibrated scores, with intervals.
:func:`rank_agreement`
    Do two metrics order the same model pairs the same way? Kendall's tau.
:func:`probe_errors`, :func:`error_consistency`
    Shared blind spots: which items a linear probe gets wrong, and whether two models fail on the same
    items beyond what their accuracies imply (error consistency kappa, with a bootstrap interval).

Chapter 5's single-metric grid is :func:`prhlib.crossmodal.alignment_grid`; the gallery curves are
:func:`prhlib.crossmodal.gallery_curve`. Everything here is deterministic.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import crossmodal, metrics
from ._checks import as_array as _as_2d, check_k
from .crossmodal import calibrated_pairs
from .metrics import neighbours

#: Columns of :func:`prhlib.world.latent` (one object per scene) that each droppable attribute occupies.
ATTRIBUTE_COLUMNS: dict[str, tuple[str, ...]] = {
    "shape": ("shape=circle", "shape=square", "shape=triangle", "shape=cross"),
    "color": ("L*", "a*", "b*"),
    "size": ("size",),
    "position": ("x", "y"),
}


def _drop_tuple(drop) -> tuple[str, ...]:
    drop = (drop,) if isinstance(drop, str) else tuple(drop)
    unknown = [d for d in drop if d not in ATTRIBUTE_COLUMNS]
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown}: choose from {tuple(ATTRIBUTE_COLUMNS)}")
    return drop


def visible_latent(z, drop: Sequence[str] = (), names: Sequence[str] | None = None) -> np.ndarray:
    """The hidden scene without the attributes a modality cannot express.

    Parameters
    ----------
    z : array-like, shape (n, m)
        :func:`prhlib.world.latent` of one-object scenes.
    drop : sequence of str
        Attributes to remove, from ``shape``, ``color``, ``size``, ``position`` (the names of the world's
        ``text_drop`` / ``image_drop`` options).
    names : sequence of str, optional
        Column names of ``z`` (default :func:`prhlib.world.latent_names` for one object).

    Returns
    -------
    numpy.ndarray, shape (n, m')
        The remaining columns, in their original order.

    Raises
    ------
    ValueError
        for an unknown attribute, a ``names`` list of the wrong length, or dropping everything.
    """
    from . import world

    z = _as_2d(z, "z")
    names = list(world.latent_names() if names is None else names)
    if len(names) != z.shape[1]:
        raise ValueError(f"names has {len(names)} entries but z has {z.shape[1]} columns")
    removed = {c for d in _drop_tuple(drop) for c in ATTRIBUTE_COLUMNS[d]}
    missing = removed - set(names)
    if missing:
        raise ValueError(f"z has no columns {sorted(missing)} (is it a one-object latent?)")
    keep = [i for i, c in enumerate(names) if c not in removed]
    if not keep:
        raise ValueError("dropping every attribute leaves nothing to compare")
    return z[:, keep]


def scene_features(z) -> np.ndarray:
    r"""A hidden scene as features for the paper's protocol: centred columns, unit-length rows.

    Dot products of the result are cosine similarities around the scenes' mean, the same neighbourhood
    notion :func:`prhlib.metrics.prepare` gives a model's features (no clamp: latents have no outliers).

    Parameters
    ----------
    z : array-like, shape (n, m)

    Returns
    -------
    numpy.ndarray, shape (n, m)

    Raises
    ------
    ValueError
        for NaN/inf, or a row equal to the mean (it has no direction).
    """
    z = _as_2d(z, "z")
    centred = z - z.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a scene equals the mean scene exactly: it has no direction after centring")
    return centred / norms


def knn_membership(x, k: int = 10) -> np.ndarray:
    r"""Probability that sample ``j`` is among the ``k`` nearest neighbours of sample ``i``, ties broken at random.

    The tie rule of :func:`prhlib.metrics.mutual_knn` (``prhlib.metrics.neighbours.TieAware``), as a
    matrix: neighbours are by dot product, self excluded; samples strictly more similar than the
    ``k``-th largest similarity are neighbours with probability 1, and the ``t`` samples tied with it
    (equal up to the rounding of a float64 dot product) share the remaining ``k - s`` places, each
    with probability :math:`(k - s)/t`. Without ties this is the 0/1 indicator of the usual neighbour
    lists.

    Parameters
    ----------
    x : array-like, shape (n, d)
    k : int
        Between 1 and n - 1.

    Returns
    -------
    numpy.ndarray, shape (n, n), float64
        Each row sums to ``k``; the diagonal is 0.
    """
    x = _as_2d(x, "x")
    k = check_k(k, x.shape[0])
    (sets,) = neighbours.determined_lists([torch.from_numpy(x)], k, "mutual_knn", ("x",))
    return sets.table().double().numpy()


def expected_mutual_knn(a, b, k: int = 10) -> float:
    r"""Mutual k-NN when ties in either representation are broken at random: its expectation.

    :math:`\frac{1}{nk}\sum_i \sum_j P_A(j \in N(i))\, P_B(j \in N(i))`, with the tie-breaking of A and B
    independent (:func:`knn_membership`). This is :func:`prhlib.metrics.mutual_knn`, whose tie rule
    counts every tied candidate with this probability, computed on float64 copies of the inputs.
    Without tied neighbours it is the plain mutual k-NN; for a representation with repeated rows (a
    discrete attribute, a caption shared by several images) it does not depend on the order of the
    samples, as an arbitrary tie-break would.

    Parameters
    ----------
    a, b : array-like, shapes (n, d_a) and (n, d_b)
        Used as given (dot-product neighbours).
    k : int

    Returns
    -------
    float in [0, 1]
    """
    return neighbours.mutual_knn(_as_2d(a, "a"), _as_2d(b, "b"), k)


def reference_observer(z, drop_a: Sequence[str] = (), drop_b: Sequence[str] = (), k: int = 10,
                       names: Sequence[str] | None = None) -> float:
    """Mutual k-NN between two *reference* observers of one hidden scene that see different attributes.

    Observer A sees ``visible_latent(z, drop_a)``, observer B ``visible_latent(z, drop_b)``; both are
    noiseless and compare scenes by the cosine of their centred attributes (:func:`scene_features`), the
    protocol's own notion of a neighbour. Samples an observer cannot tell apart are tied, and it picks
    among them at random (:func:`expected_mutual_knn`).

    This is the score of one observer, **not an upper bound**: another function of the same visible
    attributes can score higher (random Fourier features of a visible 2-D position beat it, because the
    cosine around the centre sees only the direction of a position). Only where the visible attributes
    leave nothing but ties (e.g. shape alone) can no observer do better on average.

    Parameters
    ----------
    z : array-like, shape (n, m)
        :func:`prhlib.world.latent` of one-object scenes.
    drop_a, drop_b : sequence of str
        Attributes each observer cannot see.
    k : int
    names : sequence of str, optional
        Column names of ``z``.

    Returns
    -------
    float
        In [0, 1]; 1 when both observers see the same attributes and the scenes have no ties.
    """
    a = scene_features(visible_latent(z, drop_a, names))
    b = scene_features(visible_latent(z, drop_b, names))
    return expected_mutual_knn(a, b, k=k)


#: Backward-compatible name of :func:`reference_observer` (it was wrongly called a bound).
ceiling = reference_observer


def _check_owner(owner, rows: int, n_scenes) -> tuple[np.ndarray, int]:
    owner = np.asarray(owner)
    if owner.ndim != 1 or owner.size != rows or not np.issubdtype(owner.dtype, np.integer):
        raise ValueError(f"owner must be a 1-D integer array with one scene id per row ({rows}), "
                         f"got shape {owner.shape} and dtype {owner.dtype}")
    n_scenes = int(n_scenes)
    if owner.size and (owner.min() < 0 or owner.max() >= n_scenes):
        raise ValueError(f"owner ids must lie in [0, {n_scenes}), got {owner.min()}..{owner.max()}")
    if np.bincount(owner, minlength=n_scenes).min() == 0:
        raise ValueError("every scene must own at least one row: drop scenes without captions first")
    return owner, n_scenes


def scene_neighbour_sets(x, owner, n_scenes: int, k: int = 10) -> np.ndarray:
    """The ``k`` scenes owning the rows most similar to each row of ``x`` (its own scene excluded).

    A scene's similarity to a query row is that of its most similar row (dot product). With one row per
    scene (``owner = arange(n)``) these are the usual k-NN lists.

    Parameters
    ----------
    x : array-like, shape (m, d)
        One row per item (a caption), used as given (unit rows: cosine).
    owner : array-like of int, shape (m,)
        The scene of each row, in ``[0, n_scenes)``; every scene owns at least one row.
    n_scenes : int
    k : int
        Between 1 and ``n_scenes - 1``.

    Returns
    -------
    numpy.ndarray, shape (m, k)
        Scene ids (unordered within a row).
    """
    x = _as_2d(x, "x")
    owner, n_scenes = _check_owner(owner, x.shape[0], n_scenes)
    k = check_k(k, n_scenes)
    sims = x @ x.T
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(n_scenes))
    by_scene = np.maximum.reduceat(sims[:, order], starts, axis=1)
    by_scene[np.arange(x.shape[0]), owner] = -np.inf
    return np.argpartition(-by_scene, k - 1, axis=1)[:, :k]


def grouped_mutual_knn(scene_sets, item_sets, owner) -> np.ndarray:
    """Mutual k-NN per scene when each scene has several items (many-to-many pairing).

    For each item (query), the overlap of its neighbour scenes ``item_sets`` with its scene's neighbour
    scenes ``scene_sets``, divided by k; a scene's score is the mean over its items. With one item per
    scene this is :func:`prhlib.metrics.per_sample_scores` of mutual k-NN.

    Parameters
    ----------
    scene_sets : array-like of int, shape (n, k)
        k neighbour scenes of each scene (e.g. :func:`scene_neighbour_sets` with ``owner = arange(n)``).
    item_sets : array-like of int, shape (m, k)
        k neighbour scenes of each item (:func:`scene_neighbour_sets`).
    owner : array-like of int, shape (m,)

    Returns
    -------
    numpy.ndarray, shape (n,)
        Per-scene scores in [0, 1]; their mean is the score, chance k/(n-1).
    """
    scene_sets, item_sets = np.asarray(scene_sets), np.asarray(item_sets)
    if scene_sets.ndim != 2 or item_sets.ndim != 2 or scene_sets.shape[1] != item_sets.shape[1]:
        raise ValueError(f"scene_sets (n, k) and item_sets (m, k) need the same k, got {scene_sets.shape} "
                         f"and {item_sets.shape}")
    n, k = scene_sets.shape
    owner, _ = _check_owner(owner, item_sets.shape[0], n)
    member = np.zeros((n, n), bool)
    member[np.arange(n)[:, None], scene_sets] = True
    hits = member[owner[:, None], item_sets].sum(axis=1) / k
    return np.bincount(owner, hits, n) / np.bincount(owner, minlength=n)


def calibrated_grid(vision: Mapping[str, object], text: Mapping[str, object],
                    metric_names: Sequence[str] = ("mutual_knn", "cka"), k: int = 10, permutations: int = 200,
                    alpha: float = 0.05, q: float | None = 0.95, seed: int = 0) -> pd.DataFrame:
    """Raw and maxT-calibrated best-layer-pair scores for every (vision, text) model pair and metric.

    The multi-metric counterpart of :func:`prhlib.crossmodal.alignment_grid`: each cell is one call of
    :func:`prhlib.metrics.calibrate_layers` (the same permutations for every cell and metric).

    Parameters
    ----------
    vision, text : mapping name -> layers
        An ``n x L x d`` array or a list of ``n x d_l`` arrays per model, all describing the same ``n``
        pairs.
    metric_names : sequence of str
        From ``METRICS``.
    k : int
        Neighbours, for the metrics that use them (``k`` is ignored by CKA, SVCCA, RSA, Procrustes and
        linear predictivity).
    permutations, alpha, seed
        Of the permutation test; the smallest reachable p-value is ``1 / (permutations + 1)``.
    q : float or None
        Clamp quantile of :func:`prhlib.metrics.prepare` (``None``: layers used as given).

    Returns
    -------
    pandas.DataFrame
        One row per (vision, text, metric): ``score`` (best layer pair, floored at 0), ``threshold``,
        ``p_value``, ``calibrated``, ``layer_vision``, ``layer_text``.
    """
    if not vision or not text:
        raise ValueError("give at least one vision and one text model")
    unknown = [m for m in metric_names if m not in metrics.METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: choose from {metrics.METRICS}")
    uses_k = set(metrics.NEIGHBOUR_METRICS) | {"cknna"}
    rows = []
    for metric in metric_names:
        for vname, tname, r in calibrated_pairs(vision, text, metric=metric, k=k if metric in uses_k else None,
                                                q=q, permutations=permutations, alpha=alpha, seed=seed):
            rows.append({"vision": vname, "text": tname, "metric": metric, "score": r.score,
                         "threshold": r.threshold, "p_value": r.p_value, "calibrated": r.calibrated,
                         "layer_vision": int(r.layers[0]), "layer_text": int(r.layers[1])})
    return pd.DataFrame(rows)


def competence_trend(grid: pd.DataFrame, competence: Mapping[str, float], model: str = "text",
                     values: Sequence[str] = ("score", "calibrated"), n_boot: int = 2000,
                     permutations: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Does alignment rise with competence? Spearman's rho over the cells of alignment grids, with a
    bootstrap interval and a permutation p-value (:func:`prhlib.metrics.rank_correlation`).

    Cells that share a model share its competence, so the interval (cells resampled) treats them as
    independent: average over the other side first when models, not cells, are the unit.

    Parameters
    ----------
    grid : pandas.DataFrame
        Long format with a ``metric`` column, one row per (vision, text, metric) cell and the columns in
        ``values`` (e.g. :func:`prhlib.crossmodal.alignment_grid` outputs concatenated with a ``metric``
        column).
    competence : mapping model name -> float
        Competence of each model in column ``model`` (e.g. a linear probe's accuracy).
    model : str
        The column holding the models whose competence is the x-axis.
    values : sequence of str
        Score columns to correlate with competence.
    n_boot, permutations, seed
        Passed to :func:`prhlib.metrics.rank_correlation`.

    Returns
    -------
    pandas.DataFrame
        One row per metric: for each value ``rho_<value>``, its 95 % interval ``rho_<value>_low`` and
        ``rho_<value>_high`` and ``p_<value>``; and ``cells`` (number of grid cells). All four are NaN
        when the scores (or the competences) are all equal (e.g. every calibrated score is 0).
    """
    need = ["metric", model, *values]
    missing = [c for c in need if c not in grid.columns]
    if missing:
        raise ValueError(f"grid lacks the column(s) {missing}")
    unknown = sorted(set(grid[model]) - set(competence))
    if unknown:
        raise ValueError(f"no competence given for {unknown}")
    rows = []
    for metric, part in grid.groupby("metric", sort=False):
        if len(part) < 3:
            raise ValueError(f"metric {metric!r} has {len(part)} cells: need at least 3 for a rank correlation")
        x = part[model].map(competence).to_numpy(dtype=float)
        row = {"metric": metric, "cells": len(part)}
        for v in values:
            y = part[v].to_numpy(dtype=float)
            cols = [f"rho_{v}", f"rho_{v}_low", f"rho_{v}_high", f"p_{v}"]
            if np.ptp(y) == 0 or np.ptp(x) == 0:
                row.update(dict.fromkeys(cols, np.nan))
                continue
            r = metrics.rank_correlation(x, y, n_boot=n_boot, permutations=permutations, seed=seed)
            row.update(zip(cols, (r.estimate, r.ci_low, r.ci_high, r.p_value)))
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def rank_agreement(table: pd.DataFrame, value: str = "score", by: str = "metric",
                   pair: Sequence[str] = ("vision", "text")) -> pd.DataFrame:
    """Kendall's tau between the orderings of model pairs that different metrics produce.

    Parameters
    ----------
    table : pandas.DataFrame
        Long format: one row per (model pair, metric).
    value : str
        Column to rank (``score`` or ``calibrated``).
    by : str
        Column whose values are compared (the metric).
    pair : sequence of str
        Columns identifying a model pair.

    Returns
    -------
    pandas.DataFrame
        Square, metric x metric, Kendall's tau-b (1: same order; 0: unrelated; NaN when a metric gives
        every pair the same value).
    """
    from scipy.stats import kendalltau

    missing = [c for c in (value, by, *pair) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the column(s) {missing}")
    wide = table.pivot_table(index=list(pair), columns=by, values=value, sort=False)
    if len(wide) < 3:
        raise ValueError(f"need at least 3 model pairs to compare orderings, got {len(wide)}")
    names = list(wide.columns)
    out = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for x, y in itertools.combinations(names, 2):
        u, v = wide[x].to_numpy(), wide[y].to_numpy()
        tau = np.nan if np.ptp(u) == 0 or np.ptp(v) == 0 else float(kendalltau(u, v).statistic)
        out.loc[x, y] = out.loc[y, x] = tau
    return out


# ---------------------------------------------------------------------------------------------
# shared blind spots: do aligned models fail on the same items?
# ---------------------------------------------------------------------------------------------
def probe_errors(feats, labels: Sequence, groups: Sequence | None = None, folds: int = 5,
                 alphas: Sequence[float] = tuple(np.logspace(-1, 5, 13)), seed: int = 0) -> np.ndarray:
    """Which items a cross-validated linear probe gets wrong: the per-item counterpart of
    :func:`prhlib.crossmodal.probe_accuracy` (same probe, same folds).

    Parameters
    ----------
    feats : n x d array
    labels : n class labels
    groups : n group ids, optional (items of one group never straddle train and test)
    folds : int, stratified (and grouped when ``groups`` is given)
    alphas : candidate ridge penalties (chosen by leave-one-out inside each training fold)
    seed : fold assignment; use the same seed for every model so that all see the same folds

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True where the item's held-out prediction is wrong; ``1 - mean`` is the probe accuracy.
    """
    from sklearn.model_selection import cross_val_predict

    clf, x, y, cv, kw = crossmodal.probe_cv(feats, labels, groups, folds, alphas, seed)
    with crossmodal.probe_context():
        predicted = cross_val_predict(clf, x, y, cv=cv, **kw)
    return predicted != y


def _kappa_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed agreement, agreement expected from the accuracies alone, and kappa, per row.

    ``a``, ``b``: ``r x n`` bool error indicators. Kappa is NaN where the expected agreement is 1.
    """
    observed = (a == b).mean(axis=1)
    pa, pb = 1 - a.mean(axis=1), 1 - b.mean(axis=1)       # accuracies
    expected = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)
    return observed, expected, kappa


def error_consistency(errors_a, errors_b, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    r"""Do two classifiers fail on the same items beyond what their accuracies imply?

    Error consistency of :cite:t:`geirhos2020beyond`: Cohen's kappa on the per-item "right or wrong"
    outcomes,

    .. math:: \kappa = \frac{c_{obs} - c_{exp}}{1 - c_{exp}}, \qquad
              c_{exp} = p_a p_b + (1 - p_a)(1 - p_b),

    where :math:`c_{obs}` is the fraction of items on which both are right or both are wrong and
    :math:`p_a, p_b` are the accuracies. Independent errors give :math:`\kappa \approx 0`, identical
    errors 1, errors that avoid each other negative values.

    Parameters
    ----------
    errors_a, errors_b : array-like of bool, shape (n,)
        True where the model is wrong on item i (e.g. :func:`probe_errors`), the same items in order.
    n_boot : int
        Bootstrap replicates resampling items; replicates where kappa is undefined (both models
        always right, or always wrong, on the resample) are left out.
    seed : int
        Seeds the bootstrap.
    alpha : float
        1 - coverage of the percentile interval.

    Returns
    -------
    dict
        ``observed`` (c_obs), ``expected`` (c_exp), ``kappa``, ``ci_low``, ``ci_high``, ``n``.
    """
    errs = []
    for v, name in ((errors_a, "errors_a"), (errors_b, "errors_b")):
        arr = np.asarray(v)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one outcome per item), got shape {arr.shape}")
        if arr.dtype != bool:
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"{name} must hold booleans (True = wrong) or 0/1 values")
            arr = arr.astype(bool)
        errs.append(arr)
    a, b = errs
    if a.size != b.size:
        raise ValueError(f"errors_a and errors_b must describe the same items: {a.size} vs {b.size}")
    if a.size < 2:
        raise ValueError(f"need at least 2 items, got {a.size}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    observed, expected, kappa = (float(v[0]) for v in _kappa_rows(a[None], b[None]))
    if not np.isfinite(kappa):
        raise ValueError("kappa is undefined: both models are right on every item or wrong on every item "
                         "(expected agreement 1); use harder or more items")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(int(n_boot), a.size))
    boot = _kappa_rows(a[idx], b[idx])[2]
    boot = boot[np.isfinite(boot)]
    if boot.size < n_boot / 2:
        raise ValueError(f"kappa was undefined in {n_boot - boot.size} of {n_boot} bootstrap resamples "
                         "(too few errors); use more items")
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return {"observed": observed, "expected": expected, "kappa": kappa, "ci_low": float(low),
            "ci_high": float(high), "n": int(a.size)}
