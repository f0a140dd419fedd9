"""How far from chance? Null levels, permutation calibration, bootstrap intervals, meta-statistics.

``chance``                      analytic null levels
``calibrate``                   permutation test of one score (threshold, p-value, calibrated score)
``calibrate_layers``            the same for the best-layer-pair maximum (maxT)
``bootstrap_ci``                interval of a score over samples
``bootstrap_difference``        paired interval of the difference of two scores on the same items
``permutation_p_value``, ``permutation_threshold``   the one exact rule every permutation test uses
``rank_correlation``            a rank correlation over items with interval and permutation p-value
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from .._checks import (as_pair, check_choice, check_float, check_int, check_k, check_seed, to_tensor)
from .._threads import limited
from .neighbours import NEIGHBOUR_METRICS, per_sample_scores
from .protocol import prepared_pair, best_of
from .registry import METRICS, layer_scorer, max_score, metric_function


def chance(metric: str, n: int, k: int | None = None, d_a: int | None = None, d_b: int | None = None) -> float:
    r"""Analytic chance level of a metric for two *unrelated* representations.

    * ``mutual_knn``: exactly :math:`k/(n-1)` in expectation (a random relabelling of B puts each
      B-neighbour among A's k neighbours with probability :math:`k/(n-1)`).
    * ``cycle_knn``: about :math:`1 - (1 - k/(n-1))^k` (each of the k B-neighbours independently
      lists i among its A-neighbours; hubs make it approximate).
    * ``cka`` (biased, linear kernel, independent Gaussian features used as given):
      :math:`\sqrt{d_a d_b / ((n + d_a)(n + d_b))}`, which is :math:`d/(n+d)` when
      :math:`d_a = d_b = d`. It is a ratio of expectations: with :math:`n' = n - 1` degrees of freedom
      after centring, :math:`E\|A^\top B\|_F^2 = n' d_a d_b` and
      :math:`E\|A^\top A\|_F^2 = d_a n'(n' + d_a + 1)`.
    * ``unbiased_cka``: 0 (the unbiased HSIC has expectation 0 under independence).

    Parameters
    ----------
    metric : str
    n : int
        Samples.
    k : int, optional
        Neighbours (neighbour metrics).
    d_a, d_b : int, optional
        Feature dimensions (``cka``); ``d_b`` defaults to ``d_a``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        for metrics with no analytic null (``lcs_knn``, ``edit_distance_knn``, ``cknna``, ``svcca``,
        ``rsa``, ``procrustes``, ``linear_predictivity``, RBF CKA): use :func:`calibrate`, which
        measures the null by permutation.
    """
    n = check_int(n, "n", minimum=2)
    if metric in ("mutual_knn", "cycle_knn"):
        if k is None:
            raise ValueError(f"chance({metric!r}) needs k")
        k = check_k(k, n)
        p = k / (n - 1)
        return p if metric == "mutual_knn" else 1.0 - (1.0 - p) ** k
    if metric == "cka":
        if d_a is None:
            raise ValueError("chance('cka') needs d_a (and d_b if different)")
        d_a = check_int(d_a, "d_a", minimum=1)
        d_b = d_a if d_b is None else check_int(d_b, "d_b", minimum=1)
        return math.sqrt(d_a * d_b / ((n + d_a) * (n + d_b)))
    if metric == "unbiased_cka":
        return 0.0
    if metric in METRICS:
        raise ValueError(f"{metric!r} has no analytic chance level; measure its null with "
                         "metrics.calibrate(a, b, metric=...) (a permutation test)")
    raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")


@dataclass
class CalibrationResult:
    """Outcome of a permutation test (Gröger et al. 2026).

    Attributes
    ----------
    score : float
        The observed score.
    threshold : float
        tau: the ceil((1 - alpha)(K + 1))-th smallest of {observed, K null scores}.
    p_value : float
        (1 + #{null >= observed}) / (K + 1); never below 1 / (K + 1).
    calibrated : float
        max((score - tau) / (s_max - tau), 0): 0 unless the score beats the null, 1 at the maximum.
    null : numpy.ndarray
        The K scores under random row permutations of B.
    s_max : float
        The metric's maximum.
    alpha : float
    metric : str
    layers : tuple of int or None
        For :func:`calibrate_layers`: the arg-max layer pair of the observed scores.
    """

    score: float
    threshold: float
    p_value: float
    calibrated: float
    null: np.ndarray = field(repr=False)
    s_max: float = 1.0
    alpha: float = 0.05
    metric: str = ""
    layers: tuple[int, int] | None = None

    @property
    def significant(self) -> bool:
        """True when p_value <= alpha."""
        return self.p_value <= self.alpha


def _check_permutations(permutations, alpha, seed) -> tuple[int, float, int]:
    return (check_int(permutations, "permutations", minimum=1),
            check_float(alpha, "alpha", 0, 1, low_inclusive=False, high_inclusive=False), check_seed(seed))


def _summarise(observed: float, null: np.ndarray, alpha: float, s_max: float, metric: str,
               layers=None) -> CalibrationResult:
    tau = permutation_threshold(null, alpha, observed=observed)
    p = permutation_p_value(observed, null)
    calibrated = 0.0 if tau >= s_max else max((observed - tau) / (s_max - tau), 0.0)
    return CalibrationResult(score=float(observed), threshold=tau, p_value=p, calibrated=float(calibrated),
                             null=null, s_max=s_max, alpha=alpha, metric=metric, layers=layers)


def _perms(n: int, permutations: int, seed: int, device) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.permutation(n)).to(device) for _ in range(permutations)]


def calibrate(a, b, metric: str = "mutual_knn", k: int | None = 10, permutations: int = 200,
              alpha: float = 0.05, seed: int = 0, **kwargs) -> CalibrationResult:
    """Permutation-calibrate one alignment score (Gröger et al. 2026).

    Shuffle the rows of ``b`` ``permutations`` times (breaking the pairing, keeping each
    representation's own geometry) and recompute the metric: that is the score's null distribution.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
        Used as given (call :func:`prepare` first for the paper's protocol).
    metric : str
        One of ``METRICS``; ``"procrustes"`` is :func:`procrustes_similarity`.
    k : int or None
    permutations : int
        K; 200-500 is typical. The smallest reachable p-value is 1 / (K + 1).
    alpha : float
        Level of the threshold.
    seed : int
        Seeds the permutations.
    **kwargs
        Passed to the metric.

    Returns
    -------
    CalibrationResult
        ``.score .threshold .p_value .calibrated .null``.

    Notes
    -----
    Neighbour metrics reuse the neighbour lists (permuting B relabels them) and CKA reuses the Gram
    matrices, so a permutation costs O(n k) or O(n^2), not a new metric call.
    """
    permutations, alpha, seed = _check_permutations(permutations, alpha, seed)
    A, B = as_pair(a, b)
    scorer = layer_scorer(metric, [A], [B], k, kwargs, where="calibrate")
    observed = float(scorer(None)[0, 0])
    with limited(1):   # each permutation is a little work: thread wake-ups would dominate
        null = np.array([float(scorer(p)[0, 0]) for p in _perms(A.shape[0], permutations, seed, A.device)])
    return _summarise(observed, null, alpha, max_score(metric, k), metric)


def calibrate_layers(layers_a, layers_b, metric: str = "mutual_knn", k: int | None = 10,
                     q: float | None = 0.95, permutations: int = 200, alpha: float = 0.05, seed: int = 0,
                     include_concat: bool = False, clamp: str = "exact", **kwargs) -> CalibrationResult:
    """Calibrate the paper's best-layer-pair score with a maxT permutation test.

    The observed score is :func:`best_layer_pair`'s (max over all layer pairs, floored at 0). Under
    each permutation the *same* row shuffle is applied to every layer of B and the maximum over all
    layer pairs is recomputed, so the null accounts for having searched many pairs.

    Parameters
    ----------
    layers_a, layers_b : n x L x d arrays/tensors or lists of n x d_l layers
    metric, k, permutations, alpha, seed, **kwargs
        As in :func:`calibrate`.
    q : float or None
        Clamp quantile of :func:`prepare` (``None``: layers used as given).
    include_concat : bool
        Add the concatenation of all layers as one more candidate per model (index -1), as in the
        paper-era official code (:func:`best_layer_pair`); the maxT null then maximises over the
        enlarged candidate set too.
    clamp : {"exact", "per_sample"}
        The clamp threshold rule of :func:`prepare` (exact global quantile, or the official
        command's default: per-sample quantiles averaged). The clamp is applied once, before the
        permutations.

    Returns
    -------
    CalibrationResult
        With ``.layers`` = the observed arg-max pair.
    """
    permutations, alpha, seed = _check_permutations(permutations, alpha, seed)
    A, B = prepared_pair(layers_a, layers_b, q, include_concat, clamp)
    scorer = layer_scorer(metric, A, B, k, kwargs, where="calibrate_layers")
    observed, layers = best_of(scorer(None), include_concat)
    with limited(1):   # each permutation is a little work: thread wake-ups would dominate
        null = np.array([max(0.0, float(scorer(p).max()))
                         for p in _perms(A[0].shape[0], permutations, seed, A[0].device)])
    return _summarise(observed, null, alpha, max_score(metric, k), metric, layers=layers)


@dataclass
class BootstrapResult:
    """A confidence interval over samples (:func:`bootstrap_ci`).

    Attributes
    ----------
    score : float
        The metric on all samples.
    low, high : float
        The interval's bounds.
    level : float
        Its coverage, e.g. 0.95.
    samples : numpy.ndarray
        The bootstrap replicates.
    method : str
        ``"queries"`` (neighbour metrics: resample the per-sample terms) or ``"half-samples"``
        (recompute on n // 2 distinct rows, rescale and reflect; see :func:`bootstrap_ci`).
    """

    score: float
    low: float
    high: float
    level: float
    samples: np.ndarray = field(repr=False)
    method: str = "half-samples"


def bootstrap_ci(a, b, metric: str = "mutual_knn", k: int | None = 10, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0, **kwargs) -> BootstrapResult:
    r"""Confidence interval of an alignment score over samples.

    Two schemes, chosen by the metric (``.method`` says which):

    ``"queries"`` (neighbour metrics)
        The score is a mean of per-sample terms (:func:`per_sample_scores`); the replicates resample
        those terms with replacement, neighbour lists fixed, and the interval is their percentile
        interval. It reflects which *queries* were drawn, for a fixed gallery.
    ``"half-samples"`` (kernel, geometry and every other metric)
        Resampling *rows* with replacement is wrong for these metrics: a duplicated row is a perfect
        match of itself in both representations, so CKA-type and Procrustes scores of every replicate
        are inflated (unbiased CKA of two independent Gaussians, n = 100, d = 64: score 0.002, a
        with-replacement "95 %" interval (0.32, 0.46)). Instead each replicate draws
        :math:`m = \lfloor n/2 \rfloor` distinct rows *without* replacement (no duplicates) and
        recomputes the metric: :math:`\theta^*_m`. Its spread around the replicates' mean, rescaled by
        :math:`\sqrt{m/(n-m)}` (the delete-d jackknife factor of Shao & Wu 1989; 1 for even n, where
        the finite-population correction of a half-sample exactly restores the variance of a
        mean of n), estimates the spread of the score at n; the interval is the basic
        (reflected) subsampling interval of Politis & Romano (1994),
        :math:`[\hat\theta_n - q_{1-\alpha/2},\ \hat\theta_n - q_{\alpha/2}]` with :math:`q` the
        quantiles of :math:`\sqrt{m/(n-m)}\,(\theta^*_m - \overline{\theta^*_m})`.
        Centring on the replicates' mean removes the size-m bias of metrics whose level depends on n
        (biased CKA, Procrustes, SVCCA): the interval is for the *expected score at this n* (the
        quantity the score estimates, its finite-sample bias included; use :func:`unbiased_cka` for
        a bias-free level). Measured coverage (``tests/test_inference.py``, n = 100, d = 16, 150
        repetitions): 0.95-0.99 on related data; conservative (up to 1.0) for unrelated data, where
        CKA-type statistics are degenerate and their spread shrinks like 1/n rather than 1/sqrt(n).
        ``linear_predictivity`` is supported: without duplicates nothing leaks between its folds.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    metric : str
        One of ``METRICS``.
    k : int or None
    n_boot : int
        Replicates.
    level : float
        Coverage in (0, 1).
    seed : int
    **kwargs
        Passed to the metric.

    Returns
    -------
    BootstrapResult
        ``.samples`` are the replicates whose percentile interval is ``(low, high)`` (for half-samples
        the reflected, rescaled values :math:`\hat\theta_n - \sqrt{m/(n-m)}(\theta^*_m - \overline{\theta^*_m})`).

    Raises
    ------
    ValueError
        for a half-sample scheme with n < 8 (a half-sample of fewer than 4 rows), or when the metric
        itself rejects a half-sample (e.g. ``k`` > m - 1 or ``svcca``'s ``dim`` > m - 1).
    """
    n_boot, level = _check_bootstrap(metric, n_boot, level)
    A, B = as_pair(a, b)
    scheme = _scheme(metric, A.shape[0], "bootstrap_ci")
    idx = _draws(scheme, A.shape[0], n_boot, check_seed(seed))
    score, samples, method = _replicates(A, B, metric, k, kwargs, idx, scheme)
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return BootstrapResult(score=score, low=float(low), high=float(high), level=level, samples=samples,
                           method=method)


def _check_bootstrap(metric: str, n_boot, level) -> tuple[int, float]:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    n_boot = check_int(n_boot, "n_boot", minimum=2)
    level = check_float(level, "level", 0, 1, low_inclusive=False, high_inclusive=False)
    return n_boot, level


def _scheme(metric: str, n: int, where: str) -> str:
    """``"queries"`` for the neighbour metrics, ``"half-samples"`` for the others (checks n)."""
    if metric in NEIGHBOUR_METRICS:
        return "queries"
    if n < 8:
        raise ValueError(f"{where} of {metric!r} draws half-samples of n // 2 rows and needs n >= 8, got "
                         f"n={n}; collect more samples")
    return "half-samples"


def _draws(scheme: str, n: int, n_boot: int, seed: int) -> np.ndarray:
    """Row indices of the replicates: n with replacement (queries) or n // 2 distinct (half-samples)."""
    rng = np.random.default_rng(seed)
    if scheme == "queries":
        return rng.integers(0, n, size=(n_boot, n))
    return np.argsort(rng.random((n_boot, n)), axis=1)[:, : n // 2]


def _replicates(A: torch.Tensor, B: torch.Tensor, metric: str, k, kw: dict,
                idx: np.ndarray, scheme: str) -> tuple[float, np.ndarray, str]:
    """(score on all rows, one replicate per row of ``idx`` (already rescaled and reflected for
    half-samples), scheme).

    Neighbour metrics average their per-sample terms over the drawn queries (neighbour lists fixed);
    the others are recomputed on the drawn half-samples (see :func:`bootstrap_ci`).
    """
    n = A.shape[0]
    if metric in NEIGHBOUR_METRICS:
        metric_function(metric, k, kw, where="bootstrap")   # rejects options a neighbour metric lacks
        rows = per_sample_scores(A, B, metric=metric, k=k)
        raw, score = rows[idx].mean(axis=1), float(rows.mean())
    else:
        fn = metric_function(metric, k, kw, where="bootstrap")
        score = float(fn(A, B))
        raw = np.empty(idx.shape[0])
        for r, i in enumerate(idx):
            i = torch.from_numpy(i).to(A.device)
            raw[r] = fn(A[i], B[i])
    if scheme == "queries":
        return score, raw, scheme
    m = idx.shape[1]
    return score, score - math.sqrt(m / (n - m)) * (raw - raw.mean()), scheme


@dataclass(frozen=True)
class DifferenceResult:
    """A paired bootstrap interval for the difference of two scores on the same items.

    Attributes
    ----------
    difference : float
        ``first - second`` on all n items.
    low, high : float
        Percentile interval of the paired replicates.
    level : float
    first, second : float
        The two scores on all items.
    samples : numpy.ndarray
        The replicated differences.
    method : str
        The resampling scheme (``"queries"`` or ``"half-samples"``, as in :func:`bootstrap_ci`).
    """

    difference: float
    low: float
    high: float
    level: float
    first: float
    second: float
    samples: np.ndarray = field(repr=False)
    method: str = "queries"

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or below 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return (f"difference = {self.difference:.3f} ({self.first:.3f} - {self.second:.3f}), "
                f"{round(100 * self.level):d}% CI [{self.low:.3f}, {self.high:.3f}]")


def bootstrap_difference(first, second, metric: str = "mutual_knn", second_metric: str | None = None,
                         k: int | None = 10, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                         first_options: dict | None = None,
                         second_options: dict | None = None) -> DifferenceResult:
    """Paired bootstrap interval of ``score(first) - score(second)`` when both are measured on the SAME items.

    Two scores on the same n items are correlated (the same hard or easy items enter both), so the
    difference needs *paired* resampling: each replicate draws one set of n item indices and
    recomputes both scores on it, with the scheme of :func:`bootstrap_ci` for each metric.

    Typical uses:

    * two metrics on one pair of representations:
      ``bootstrap_difference((a, b), (a, b), metric="mutual_knn", second_metric="cycle_knn")``;
    * one metric on two pairs that share their items (e.g. image model vs two language models):
      ``bootstrap_difference((img, lm1), (img, lm2), metric="mutual_knn")``.

    Parameters
    ----------
    first, second : tuple (a, b)
        Two pairs of feature matrices, every matrix with the same n rows in the same item order.
    metric : str
        Metric of the first pair (one of ``METRICS``).
    second_metric : str, optional
        Metric of the second pair; default ``metric``.
    k : int or None
        Neighbours, for both sides.
    n_boot : int
        Paired replicates.
    level : float
        Coverage in (0, 1).
    seed : int
    first_options, second_options : dict, optional
        Keyword options of each side's metric (e.g. ``{"kernel": "rbf"}``).

    Returns
    -------
    DifferenceResult
        ``.difference .low .high``; ``.excludes_zero`` says whether the interval excludes 0.

    Notes
    -----
    When both metrics are neighbour metrics the replicates resample queries (``"queries"``, the
    percentile interval of the paired differences). Otherwise both sides are recomputed on the same
    half-samples of n // 2 distinct rows, and the interval is the rescaled, reflected subsampling
    interval of the paired differences described in :func:`bootstrap_ci` (``"half-samples"``; a
    neighbour metric then averages its per-sample terms over the half-sample): no duplicated rows,
    so no inflated kernel or Procrustes scores.
    """
    second_metric = metric if second_metric is None else second_metric
    n_boot, level = _check_bootstrap(metric, n_boot, level)
    _check_bootstrap(second_metric, n_boot, level)
    pairs = []
    for name, pair in (("first", first), ("second", second)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name} must be a pair (a, b) of feature matrices, got {type(pair).__name__}")
        pairs.append(as_pair(*pair))
    n = pairs[0][0].shape[0]
    if pairs[1][0].shape[0] != n:
        raise ValueError(f"first and second must be measured on the same items: {n} vs "
                         f"{pairs[1][0].shape[0]} rows")
    scheme = max(_scheme(metric, n, "bootstrap_difference"), _scheme(second_metric, n, "bootstrap_difference"),
                 key=("queries", "half-samples").index)
    idx = _draws(scheme, n, n_boot, check_seed(seed))
    s1, r1, _ = _replicates(*pairs[0], metric, k, dict(first_options or {}), idx, scheme)
    s2, r2, _ = _replicates(*pairs[1], second_metric, k, dict(second_options or {}), idx, scheme)
    samples = r1 - r2     # half-samples: each side reflected around its score, so this is the
    tail = (1 - level) / 2  # reflected, rescaled paired difference around s1 - s2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return DifferenceResult(difference=s1 - s2, low=float(low), high=float(high), level=level, first=s1,
                            second=s2, samples=samples, method=scheme)


def _null_vector(null, name: str = "null") -> np.ndarray:
    arr = to_tensor(null, name).double().cpu().numpy().ravel()
    if arr.size < 1:
        raise ValueError(f"{name} is empty: give at least one permutation score")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; every permutation score must be a number")
    return arr


def permutation_p_value(observed, null) -> float:
    """One-sided permutation p-value ``(1 + #{null >= observed}) / (1 + K)``.

    Counting the observed statistic as one of the K + 1 equally likely arrangements makes the test
    exact (its false-positive rate is at most the nominal level) and the p-value never 0.

    Parameters
    ----------
    observed : float
        The statistic on the real pairing.
    null : array-like, shape (K,)
        The statistic under K random relabellings.

    Returns
    -------
    float
        In [1 / (K + 1), 1].
    """
    observed = check_float(observed, "observed")
    null = _null_vector(null)
    return (1 + int(np.sum(null >= observed))) / (null.size + 1)


def permutation_threshold(null, alpha, observed=None) -> float:
    """The level-``alpha`` threshold of a permutation test, by the exact rank rule of :func:`calibrate`.

    The pool is the K null scores plus, when given, the observed one (the permutation-test convention
    that :func:`calibrate` and :func:`calibrate_layers` use); the threshold is the
    ``ceil((1 - alpha) * len(pool))``-th smallest pooled value. ``1 - alpha`` is computed in exact
    rational arithmetic from alpha's shortest decimal form, so ``alpha = 0.05, K = 999`` gives rank 950,
    never 951 from a float rounding up.

    Parameters
    ----------
    null : array-like, shape (K,)
    alpha : float
        In (0, 1); NumPy floats such as ``np.float32(0.05)`` are read as the decimal they print as.
    observed : float, optional
        Include the observed score in the pool (pass it to reproduce :func:`calibrate`'s threshold).

    Returns
    -------
    float
    """
    alpha = check_float(alpha, "alpha", 0, 1, low_inclusive=False, high_inclusive=False)
    pool = _null_vector(null)
    if observed is not None:
        pool = np.append(pool, check_float(observed, "observed"))
    pool = np.sort(pool)
    rank = math.ceil((1 - Fraction(repr(alpha))) * pool.size)
    return float(pool[min(max(rank, 1), pool.size) - 1])


@dataclass(frozen=True)
class CorrelationResult:
    """A rank correlation over items with its bootstrap interval and permutation p-value.

    Attributes
    ----------
    estimate : float
        Spearman's rho or Kendall's tau-b on all n items.
    ci_low, ci_high : float
        Percentile bootstrap interval (pairs resampled with replacement).
    p_value : float
        Permutation p-value (``y`` shuffled), see :func:`rank_correlation`.
    n : int
        Items (pairs).
    method : str
        ``"spearman"`` or ``"kendall"``.
    level : float
        Coverage of the interval.
    alternative : str
        ``"two-sided"``, ``"greater"`` or ``"less"``.
    """

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    method: str
    level: float = 0.95
    alternative: str = "two-sided"

    def __str__(self) -> str:
        name = {"spearman": "Spearman rho", "kendall": "Kendall tau"}[self.method]
        side = "" if self.alternative == "two-sided" else f" ({self.alternative})"
        return (f"{name} = {self.estimate:.2f}, {round(100 * self.level):d}% CI [{self.ci_low:.2f}, "
                f"{self.ci_high:.2f}], permutation p{side} = {self.p_value:.3g}, n = {self.n}")


def _rank_rows(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy import stats

    return stats.rankdata(x, axis=-1)


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows; NaN where a row is constant."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def _row_kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Kendall's tau-b of matching rows: :math:`\sum s^x_{ij}s^y_{ij} / \sqrt{\sum (s^x_{ij})^2 \sum (s^y_{ij})^2}`
    over pairs i < j with :math:`s_{ij} = \mathrm{sign}(v_j - v_i)`; NaN where a row is constant."""
    iu, ju = np.triu_indices(x.shape[-1], 1)
    out = np.empty(x.shape[:-1])
    chunk = max(1, 4_000_000 // max(1, iu.size))
    for s in range(0, x.shape[0], chunk):
        sx = np.sign(x[s:s + chunk, ju] - x[s:s + chunk, iu])
        sy = np.sign(y[s:s + chunk, ju] - y[s:s + chunk, iu])
        den = np.sqrt((sx * sx).sum(-1) * (sy * sy).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + chunk] = np.where(den > 0, (sx * sy).sum(-1) / np.where(den > 0, den, 1.0), np.nan)
    return out


def _rank_corr_rows(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        return _row_pearson(_rank_rows(x), _rank_rows(y))
    return _row_kendall(x, y)


def rank_correlation(x, y, method: str = "spearman", n_boot: int = 2000, permutations: int = 9999,
                     seed: int = 0, alpha: float = 0.05, alternative: str = "two-sided") -> CorrelationResult:
    """Rank correlation of two paired samples (e.g. competence and alignment over n models), with an
    interval and a p-value, because a correlation over a handful of items is fragile.

    Parameters
    ----------
    x, y : array-like, shape (n,)
        Paired values, n >= 3, finite, neither constant.
    method : {"spearman", "kendall"}
        Spearman's rho (Pearson correlation of average ranks) or Kendall's tau-b.
    n_boot : int
        Bootstrap replicates. Each draws n *pairs* ``(x_i, y_i)`` with replacement and recomputes the
        correlation; the interval is the percentile interval of those replicates at level
        ``1 - alpha``. Replicates whose resampled x or y is constant (the correlation is undefined)
        are left out; an error is raised if more than half are.
    permutations : int
        K random shuffles of ``y`` (x fixed): the null distribution of no association.
    seed : int
        Seeds the bootstrap and the permutations.
    alpha : float
        1 - coverage of the interval (0.05: a 95 % interval).
    alternative : {"two-sided", "greater", "less"}
        Two-sided compares the absolute correlation with the absolute null values; ``"greater"`` tests a positive association.
        p = (1 + #{null at least as extreme}) / (1 + K) (:func:`permutation_p_value`).

    Returns
    -------
    CorrelationResult
        ``str(result)`` reads e.g. "Spearman rho = 0.62, 95% CI [0.10, 0.90], permutation p = 0.031,
        n = 9".

    Notes
    -----
    Observed and null correlations are compared after rounding to 12 decimals, so exact ties that
    differ only by floating-point summation order count as at least as extreme (conservative).
    With n items there are only n! distinct permutations; for n <= 7 the smallest reachable p-value
    is about 1/n!, whatever K.
    """
    method = check_choice(method, "method", ("spearman", "kendall"))
    alternative = check_choice(alternative, "alternative", ("two-sided", "greater", "less"))
    n_boot = check_int(n_boot, "n_boot", minimum=1)
    permutations = check_int(permutations, "permutations", minimum=1)
    seed = check_seed(seed)
    alpha = check_float(alpha, "alpha", 0, 1, low_inclusive=False, high_inclusive=False)
    xs = [to_tensor(v, name).double().cpu().numpy() for v, name in ((x, "x"), (y, "y"))]
    for v, name in zip(xs, ("x", "y")):
        if v.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one value per item), got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or inf; drop those items from both x and y first")
    xv, yv = xs
    if xv.size != yv.size:
        raise ValueError(f"x and y must pair the same items: {xv.size} vs {yv.size} values")
    n = xv.size
    if n < 3:
        raise ValueError(f"a rank correlation needs n >= 3 items, got {n}")
    for v, name in ((xv, "x"), (yv, "y")):
        if np.ptp(v) == 0:
            raise ValueError(f"{name} is constant: a rank correlation is undefined")
    estimate = float(_rank_corr_rows(xv[None], yv[None], method)[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = _rank_corr_rows(xv[idx], yv[idx], method)
    boot = boot[np.isfinite(boot)]
    if boot.size < n_boot / 2:
        raise ValueError(f"only {boot.size} of {n_boot} bootstrap replicates had a defined correlation "
                         f"(n = {n} items, many resamples are constant); collect more items")
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    perms = np.argsort(rng.random((permutations, n)), axis=1)
    null = _rank_corr_rows(np.broadcast_to(xv, (permutations, n)), yv[perms], method)
    # Rounded to 12 decimals so that arrangements with the same correlation, summed in another
    # order, count as ties ("at least as extreme") instead of differing in the last bit.
    sign = {"two-sided": None, "greater": 1.0, "less": -1.0}[alternative]
    obs, null = (abs(estimate), np.abs(null)) if sign is None else (sign * estimate, sign * null)
    p = permutation_p_value(round(obs, 12), np.round(null, 12))
    return CorrelationResult(estimate=estimate, ci_low=float(low), ci_high=float(high), p_value=p, n=n,
                             method=method, level=1 - alpha, alternative=alternative)
