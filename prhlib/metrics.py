r"""Alignment metrics: how similar are two representations of the same n inputs?

Every metric takes two feature matrices ``a`` (n x d_a) and ``b`` (n x d_b) whose row ``i`` describes
the same input ``i`` (an image and its caption, say). Inputs may be NumPy arrays or PyTorch tensors;
the work is done in PyTorch on the tensor's device (a GPU tensor stays on the GPU) and a Python float
comes back. Features are used *as given*, exactly as in the official code of Huh et al. (2024): call
:func:`prepare` first to get the paper's protocol (clamp outliers, l2-normalise rows).

Local (neighbourhood) metrics, on the k nearest neighbours by dot product, self excluded
    :func:`mutual_knn` (the paper's headline metric), :func:`cycle_knn`, :func:`lcs_knn`,
    :func:`edit_distance_knn`, and the hybrid :func:`cknna`; :func:`knn` gives the neighbour lists and
    :func:`per_sample_scores` the per-sample terms.
Global (kernel / geometry) metrics
    :func:`cka` (linear or RBF, biased or unbiased HSIC), :func:`unbiased_cka`, :func:`svcca`,
    :func:`rsa`, :func:`procrustes_distance` / :func:`procrustes_similarity`,
    :func:`linear_predictivity` (cross-validated ridge :math:`R^2`, asymmetric); :func:`hsic` on kernels.
Any metric by name
    :func:`measure` (names in :data:`METRICS`).
The paper's protocol over layers
    :func:`prepare`, :func:`layer_scores`, :func:`best_layer_pair`.
How far from chance?
    :func:`chance` (analytic null levels), :func:`calibrate` (permutation test, threshold, p-value,
    calibrated score), :func:`calibrate_layers` (the same for a maximum over layer pairs, "maxT"),
    :func:`bootstrap_ci` (confidence interval over samples).

Where prhlib differs from the official ``metrics.py`` on purpose
    * no epsilon is added to any denominator: a degenerate input (a constant representation) raises
      ``ValueError`` instead of returning a number near 0;
    * the diagonal of the similarity matrix is set to ``-inf`` rather than ``-1e8`` before the neighbour
      search, so a point is never its own neighbour even for features with huge norms;
    * kernel metrics are computed in float64;
    * :func:`cknna` accepts ``k=None`` (it then equals :func:`unbiased_cka`);
    * :func:`svcca` is deterministic (exact SVD, exact canonical correlations) where the official one
      uses a randomised SVD, an iterative CCA and added noise;
    * :func:`best_layer_pair` returns the arg-max layer pair even when no pair scores above 0 (the
      score is still floored at 0, as in the paper).
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np
import torch

from ._checks import as_matrix, require_finite as _check_finite, to_tensor as _to_tensor

__all__ = [
    "METRICS", "NEIGHBOUR_METRICS", "as_matrix", "as_layers", "knn", "mutual_knn", "cycle_knn",
    "lcs_knn", "edit_distance_knn", "per_sample_scores", "cka", "unbiased_cka", "hsic", "cknna", "svcca",
    "rsa", "procrustes_distance", "procrustes_similarity", "linear_predictivity", "measure", "max_score",
    "prepare", "layer_scores", "best_layer_pair", "chance", "calibrate", "calibrate_layers",
    "bootstrap_ci", "CalibrationResult", "BootstrapResult", "rank_correlation", "CorrelationResult",
    "permutation_p_value", "permutation_threshold", "bootstrap_difference", "DifferenceResult",
]

#: Metrics computed from the two k-nearest-neighbour lists alone.
NEIGHBOUR_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")

#: Every metric name accepted by :func:`measure`, :func:`calibrate` and the layer functions.
METRICS = NEIGHBOUR_METRICS + ("cka", "unbiased_cka", "cknna", "svcca", "rsa", "procrustes",
                               "linear_predictivity")

#: Largest similarity matrix block (in elements) the neighbour search builds at once: 2**26 float32
#: values are 256 MB, so n = 40,000 samples need 40 blocks of ~1,700 rows instead of one n x n matrix.
CHUNK_ELEMENTS = 2**26

#: Largest total size (bytes) of the per-layer Gram matrices cached by the layer functions.
GRAM_CACHE_BYTES = 2**30

#: Problems with less work than this (about n^2 + n d_a + n d_b) run on one thread: waking a thread
#: pool costs more than it saves on small inputs, and on a busy machine a wake-up can stall for tens
#: of milliseconds per matrix product.
SINGLE_THREAD_WORK = 2**21


def _numel(x) -> tuple[int, int]:
    """(rows, elements) of an array, tensor, or list of them; (0, 0) for anything else."""
    if isinstance(x, (list, tuple)):
        parts = [_numel(v) for v in x]
        return (parts[0][0] if parts else 0), sum(p[1] for p in parts)
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) == 0:
        return 0, 0
    return int(shape[0]), int(np.prod(shape))


@contextmanager
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def single_thread():
    """Run PyTorch and every thread pool (BLAS, OpenMP) on one thread inside the block (restored afterwards).

    Many small operations (neighbour lists of n < 10,000 samples, ridge fits on a few hundred rows) cost
    more in thread start-up and synchronisation than they gain: measured on a shared 2-core machine, a
    maxT calibration ran 10-15x faster on one thread than on two.
    """
    from threadpoolctl import threadpool_limits

    with _one_thread(), threadpool_limits(limits=1):
        yield


def _threads_by_size(fn):
    """Run ``fn`` on one thread when its first two arguments are small (see SINGLE_THREAD_WORK)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if torch.get_num_threads() > 1:
            sizes = [_numel(v) for v in args[:2]]
            rows = max((r for r, _ in sizes), default=0)
            work = rows * rows + sum(e for _, e in sizes)
            if work < SINGLE_THREAD_WORK:
                with _one_thread():
                    return fn(*args, **kwargs)
        return fn(*args, **kwargs)
    return wrapper


# ------------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------------
def _pair(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    ta, tb = as_matrix(a, "a"), as_matrix(b, "b")
    if ta.shape[0] != tb.shape[0]:
        raise ValueError(f"a and b must describe the same samples: a has {ta.shape[0]} rows, "
                         f"b has {tb.shape[0]}")
    if ta.device != tb.device:
        tb = tb.to(ta.device)
    return ta, tb


def _check_k(k, n: int, name: str = "k", minimum: int = 1) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {k!r}")
    k = int(k)
    if k < minimum or k > n - 1:
        raise ValueError(f"{name} must be between {minimum} and n - 1 = {n - 1} (a sample is never its "
                         f"own neighbour), got {name}={k} for n={n}")
    return k


def as_layers(layers, name: str = "layers_a") -> list[torch.Tensor]:
    """Validate layered features and return one n x d tensor per layer.

    Parameters
    ----------
    layers : array-like of shape (n, L, d), or a sequence of L arrays of shape (n, d_l)
        A list allows a different width per layer (e.g. the stages of a CNN).

    Raises
    ------
    ValueError
        for an empty list, a wrong number of dimensions, NaN/inf, or layers with different row counts.
    """
    if isinstance(layers, (list, tuple)):
        if len(layers) == 0:
            raise ValueError(f"{name} is an empty list: give at least one layer")
        mats = [as_matrix(x, f"{name}[{i}]") for i, x in enumerate(layers)]
    else:
        t = _to_tensor(layers, name)
        if t.ndim == 2:
            t = t[:, None, :]
        if t.ndim != 3:
            raise ValueError(f"{name} must be n x L x d (or a list of n x d layers), got shape {tuple(t.shape)}")
        _check_finite(t, name)
        mats = [as_matrix(t[:, i, :], f"{name}[:, {i}]", check_finite=False) for i in range(t.shape[1])]
    rows = {m.shape[0] for m in mats}
    if len(rows) != 1:
        raise ValueError(f"every layer of {name} must have the same number of rows, got {sorted(rows)}")
    device = mats[0].device
    return [m.to(device) for m in mats]


def _like(result: torch.Tensor, original):
    """Return ``result`` as the same kind of object (NumPy array or tensor) as ``original``."""
    if isinstance(original, torch.Tensor):
        return result
    return result.cpu().numpy()


# ------------------------------------------------------------------------------------------------
# neighbours and the neighbour metrics
# ------------------------------------------------------------------------------------------------
def _self_gram(x: torch.Tensor) -> torch.Tensor:
    """X X^T. On the CPU via NumPy, whose matmul recognises ``X @ X.T`` and calls BLAS ``syrk``
    (one triangle, mirrored: half the multiply-adds of a general matrix product)."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        xn = x.contiguous().numpy()
        return torch.from_numpy(xn @ xn.T)
    return x @ x.T


@_threads_by_size
def knn(x, k: int = 10, chunk_rows: int | None = None) -> torch.Tensor:
    """Indices of each row's k nearest neighbours by dot product, most similar first, self excluded.

    Parameters
    ----------
    x : array-like or torch.Tensor, shape (n, d)
    k : int
        1 <= k <= n - 1.
    chunk_rows : int, optional
        Rows of the similarity matrix built at once. Default: the whole matrix when it holds at most
        :data:`CHUNK_ELEMENTS` values (on the CPU computed with BLAS ``syrk``, which exploits symmetry
        for half the multiply-adds), else blocks of ``CHUNK_ELEMENTS // n`` rows, so memory stays
        O(n * chunk_rows), never O(n^2).

    Notes
    -----
    A partial top-k selection (O(n^2) for all rows) replaces the reference's full argsort
    (O(n^2 log n)).

    Returns
    -------
    torch.Tensor, shape (n, k), int64
        On the device of ``x``; row i lists i's neighbours by decreasing dot product.
    """
    x = as_matrix(x, "x")
    return _knn(x, _check_k(k, x.shape[0]), chunk_rows)


def _knn(x: torch.Tensor, k: int, chunk_rows: int | None = None) -> torch.Tensor:
    """:func:`knn` without input validation."""
    n = x.shape[0]
    if chunk_rows is None and n * n <= CHUNK_ELEMENTS:
        sims = _self_gram(x)
        sims.fill_diagonal_(-math.inf)
        return torch.topk(sims, k, dim=1, largest=True, sorted=True).indices
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_ELEMENTS // n)
    chunk_rows = max(1, int(chunk_rows))
    out = torch.empty((n, k), dtype=torch.long, device=x.device)
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        sims = x[start:stop] @ x.T
        rows = torch.arange(stop - start, device=x.device)
        sims[rows, rows + start] = -math.inf
        out[start:stop] = torch.topk(sims, k, dim=1, largest=True, sorted=True).indices
        del sims
    return out


def _knn_all(xs: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """:func:`_knn` of several representations (same number of rows), validated by the caller.

    On a CPU with several threads the searches run side by side, each on one thread (BLAS and PyTorch),
    instead of one after the other on all threads: two single-threaded ``syrk`` products finish sooner
    than the same two products run in turn on two threads each (no synchronisation inside a product;
    measured by ``benchmarks/metrics.py``). The results are the same either way.
    """
    workers = min(torch.get_num_threads(), len(xs))
    if workers < 2 or any(x.device.type != "cpu" for x in xs):
        return [_knn(x, k) for x in xs]

    def one(x):
        torch.set_num_threads(1)   # this worker's own intra-op setting
        return _knn(x, k)

    with single_thread(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, xs))


def _relabel(knn_b: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    """Neighbour lists of ``b[perm]`` from those of ``b``: row i is ``inv[knn_b[perm[i]]]``."""
    if perm is None:
        return knn_b
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv[knn_b[..., perm, :]]


def _edge_codes(knn_a: torch.Tensor) -> torch.Tensor:
    """The neighbour graph of A as sorted integers i * n + j, one per edge i -> j (O(n k) memory)."""
    n = knn_a.shape[0]
    rows = torch.arange(n, device=knn_a.device).unsqueeze(1)
    return (rows * n + knn_a.sort(dim=1).values).flatten()   # sorted: row offsets i * n dominate


def _edge_lookup(knn_a: torch.Tensor):
    """A function (i, j) -> is j among A's neighbours of i, for index tensors i, j of one shape.

    A dense n x n boolean table when it is small (n^2 <= CHUNK_ELEMENTS bytes; one gather per query),
    else a sorted list of edge codes i * n + j searched by bisection (O(n k) memory).
    """
    n = knn_a.shape[0]
    rows = torch.arange(n, device=knn_a.device).unsqueeze(1)
    if n * n <= CHUNK_ELEMENTS:
        table = torch.zeros((n, n), dtype=torch.bool, device=knn_a.device)
        table[rows, knn_a] = True
        return lambda i, j: table[i, j]
    codes = _edge_codes(knn_a)

    def lookup(i, j):
        q = (i * n + j).reshape(-1)
        pos = torch.searchsorted(codes, q).clamp_(max=codes.numel() - 1)
        return (codes[pos] == q).reshape(torch.broadcast_shapes(i.shape, j.shape))
    return lookup


def _overlap_rows(knn_a: torch.Tensor, knn_b: torch.Tensor) -> torch.Tensor:
    """|N_A(i) ∩ N_B(i)| per row: how many B edges i -> j are also A edges.

    ``knn_b`` may carry leading batch dimensions (e.g. one list per layer of B).
    """
    rows = torch.arange(knn_a.shape[0], device=knn_b.device).unsqueeze(1)
    return _edge_lookup(knn_a)(rows.expand_as(knn_b), knn_b).sum(dim=-1)


def _cycle_rows(knn_a: torch.Tensor, knn_b: torch.Tensor) -> torch.Tensor:
    """1 if sample i is among the A-neighbours of one of its B-neighbours j (A edge j -> i), else 0."""
    rows = torch.arange(knn_a.shape[0], device=knn_b.device).unsqueeze(1)
    return _edge_lookup(knn_a)(knn_b, rows.expand_as(knn_b)).any(dim=-1)


def _antidiagonals(k: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Cells (i, j), 1 <= i, j <= k, of a (k+1) x (k+1) table grouped by i + j: each group depends only
    on the two previous groups, so a whole anti-diagonal is filled with one vectorised step."""
    out = []
    for s in range(2, 2 * k + 1):
        i = torch.arange(max(1, s - k), min(k, s - 1) + 1, device=device)
        out.append((i, s - i))
    return out


def _lcs_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Length of the longest common subsequence of each pair of rows (the textbook dynamic programme,
    filled by anti-diagonals: 2k - 1 vectorised steps instead of k^2)."""
    x = x.expand_as(y)
    k = x.shape[-1]
    match = x[..., :, None] == y[..., None, :]                      # (..., k, k)
    dp = torch.zeros((*y.shape[:-1], k + 1, k + 1), dtype=torch.long, device=y.device)
    for i, j in _antidiagonals(k, y.device):
        diag = dp[..., i - 1, j - 1] + 1
        best = torch.maximum(dp[..., i - 1, j], dp[..., i, j - 1])
        dp[..., i, j] = torch.where(match[..., i - 1, j - 1], diag, best)
    return dp[..., k, k]


def _levenshtein_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Levenshtein distance (insert, delete, substitute: cost 1) between each pair of rows
    (dynamic programme filled by anti-diagonals)."""
    x = x.expand_as(y)
    k = x.shape[-1]
    differ = (x[..., :, None] != y[..., None, :]).long()            # substitution cost
    dp = torch.zeros((*y.shape[:-1], k + 1, k + 1), dtype=torch.long, device=y.device)
    dp[..., :, 0] = torch.arange(k + 1, device=y.device)
    dp[..., 0, :] = torch.arange(k + 1, device=y.device)
    for i, j in _antidiagonals(k, y.device):
        sub = dp[..., i - 1, j - 1] + differ[..., i - 1, j - 1]
        gap = torch.minimum(dp[..., i - 1, j], dp[..., i, j - 1]) + 1
        dp[..., i, j] = torch.minimum(sub, gap)
    return dp[..., k, k]


def _neighbour_rows(metric: str, knn_a: torch.Tensor, knn_b: torch.Tensor) -> torch.Tensor:
    """Per-sample score of a neighbour metric (float64); its mean over samples is the metric."""
    k = knn_a.shape[-1]
    if metric == "mutual_knn":
        return _overlap_rows(knn_a, knn_b).double() / k
    if metric == "cycle_knn":
        return _cycle_rows(knn_a, knn_b).double()
    if metric == "lcs_knn":
        return _lcs_rows(knn_a, knn_b).double()
    if metric == "edit_distance_knn":
        return 1.0 - _levenshtein_rows(knn_a, knn_b).double() / k
    raise ValueError(f"{metric!r} is not a neighbour metric; choose one of {NEIGHBOUR_METRICS}")


def _neighbour_metric(metric: str, a, b, k: int) -> float:
    ta, tb = _pair(a, b)
    k = _check_k(k, ta.shape[0])
    return float(_neighbour_rows(metric, *_knn_all([ta, tb], k)).mean())


@_threads_by_size
def mutual_knn(a, b, k: int = 10) -> float:
    r"""Mutual k-nearest-neighbour alignment, the paper's headline metric.

    .. math:: m_{kNN}(A, B) = \frac{1}{n} \sum_{i=1}^{n} \frac{|N^A_k(i) \cap N^B_k(i)|}{k}

    where :math:`N^A_k(i)` are the k rows of ``a`` with the largest dot product with row i (i itself
    excluded). Use l2-normalised rows (:func:`prepare`) for cosine neighbours, as the paper does.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    k : int
        Neighbours per sample, 1 <= k <= n - 1.

    Returns
    -------
    float
        In [0, 1]; 1 when the neighbour sets coincide. Unrelated representations score
        :math:`k/(n-1)` on average (:func:`chance`).

    Notes
    -----
    The neighbour search runs in row blocks (:func:`knn`) and the overlap is counted from the sorted
    index lists, so memory is O(n k) beyond one block: n = 40,000 needs well under 1 GB where the
    official dense n x n masks need over 12 GB.
    """
    return _neighbour_metric("mutual_knn", a, b, k)


@_threads_by_size
def cycle_knn(a, b, k: int = 10) -> float:
    """Cycle k-NN: the fraction of samples i found among the A-neighbours of i's B-neighbours.

    Go from i to its k nearest neighbours in ``b``, then to each of their k nearest neighbours in
    ``a``: the score is the fraction of samples that come back to themselves. Not symmetric.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    k : int
        1 <= k <= n - 1.

    Returns
    -------
    float
        In [0, 1]. Unrelated representations score about :math:`1 - (1 - k/(n-1))^k`.
    """
    return _neighbour_metric("cycle_knn", a, b, k)


@_threads_by_size
def lcs_knn(a, b, k: int = 10) -> float:
    """Mean length of the longest common subsequence of the two ordered neighbour lists.

    As in the official code the length is *not* divided by k, so the score lies in [0, k].

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    k : int
        1 <= k <= n - 1.

    Returns
    -------
    float
        In [0, k]; k when both lists are identical and identically ordered.
    """
    return _neighbour_metric("lcs_knn", a, b, k)


@_threads_by_size
def edit_distance_knn(a, b, k: int = 10) -> float:
    """One minus the mean Levenshtein distance between the ordered neighbour lists, divided by k.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    k : int
        1 <= k <= n - 1.

    Returns
    -------
    float
        In [0, 1]; 1 when both ordered lists are identical. Order matters: the same set in another
        order scores less than 1.
    """
    return _neighbour_metric("edit_distance_knn", a, b, k)


@_threads_by_size
def per_sample_scores(a, b, metric: str = "mutual_knn", k: int = 10) -> np.ndarray:
    """The per-sample terms whose mean is a neighbour metric (e.g. each sample's overlap / k).

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    metric : str
        One of :data:`NEIGHBOUR_METRICS`.
    k : int

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    if metric not in NEIGHBOUR_METRICS:
        raise ValueError(f"per-sample scores exist for the neighbour metrics {NEIGHBOUR_METRICS}, "
                         f"not {metric!r}")
    ta, tb = _pair(a, b)
    k = _check_k(k, ta.shape[0])
    return _neighbour_rows(metric, *_knn_all([ta, tb], k)).cpu().numpy()


# ------------------------------------------------------------------------------------------------
# kernels, HSIC and CKA
# ------------------------------------------------------------------------------------------------
def _center(K: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T/n, without forming H."""
    return K - K.mean(dim=0, keepdim=True) - K.mean(dim=1, keepdim=True) + K.mean()


def _hsic_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """trace(K H L H) = sum((HKH) * L^T); valid for non-symmetric K, L (as CKNNA's masked kernels)."""
    return (_center(K) * L.T).sum()


def _hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    r"""Song et al. (2012) unbiased HSIC, in the official code's form (valid for non-symmetric K, L).

    .. math:: \frac{1}{m(m-3)}\Big[\sum_{ij}\tilde K_{ij}\tilde L_{ji}
              + \frac{\mathbf 1^\top\tilde K\mathbf 1\,\mathbf 1^\top\tilde L\mathbf 1}{(m-1)(m-2)}
              - \frac{2}{m-2}\mathbf 1^\top\tilde K\tilde L\mathbf 1\Big]

    with the diagonals of K and L set to 0 (:math:`\tilde K, \tilde L`).
    """
    m = K.shape[0]
    Kt = K.clone()
    Kt.fill_diagonal_(0)
    Lt = L.clone()
    Lt.fill_diagonal_(0)
    trace_term = (Kt * Lt.T).sum()
    sums = Kt.sum() * Lt.sum() / ((m - 1) * (m - 2))
    cross = Kt.sum(dim=0) @ Lt.sum(dim=1)  # = sum(Kt @ Lt) without the O(m^3) product
    return (trace_term + sums - 2.0 * cross / (m - 2)) / (m * (m - 3))


@_threads_by_size
def hsic(K, L, unbiased: bool = False) -> float:
    """Hilbert-Schmidt independence criterion of two n x n kernel matrices.

    Parameters
    ----------
    K, L : array-like or torch.Tensor, shape (n, n)
    unbiased : bool
        False: ``trace(K H L H)`` (the biased estimator, not divided by (n-1)^2, as in the official
        code; CKA's ratio cancels the scale). True: the unbiased U-statistic of Song et al. (2012),
        which needs n >= 4.

    Returns
    -------
    float
    """
    Kt, Lt = _pair(K, L)
    n = Kt.shape[0]
    if Kt.shape != (n, n) or Lt.shape != (n, n):
        raise ValueError(f"K and L must be square n x n kernels, got {tuple(Kt.shape)} and {tuple(Lt.shape)}")
    if unbiased and n < 4:
        raise ValueError(f"unbiased HSIC needs n >= 4 samples (it divides by n(n-3)), got n={n}")
    Kt, Lt = Kt.double(), Lt.double()
    return float(_hsic_unbiased(Kt, Lt) if unbiased else _hsic_biased(Kt, Lt))


def _sq_dists(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(dim=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    d.fill_diagonal_(0)
    return d.clamp_min_(0)  # rounding can leave tiny negatives; distances are >= 0


def _median(v: torch.Tensor) -> torch.Tensor:
    """The median as NumPy defines it: the mean of the two middle values for an even count."""
    m = v.numel()
    lo = torch.kthvalue(v, (m + 1) // 2).values
    hi = torch.kthvalue(v, m // 2 + 1).values
    return (lo + hi) / 2


def _gram(x: torch.Tensor, kernel: str, sigma, median_scale: float) -> torch.Tensor:
    x = x.double()
    if kernel == "linear":
        return x @ x.T
    if kernel == "rbf":
        d2 = _sq_dists(x)
        if isinstance(sigma, str):
            if sigma != "median":
                raise ValueError(f"sigma must be a positive number or 'median', got {sigma!r}")
            med = _median(d2.flatten())
            if float(med) <= 0:
                raise ValueError("the median squared distance is 0 (most rows are identical): the median "
                                 "heuristic cannot choose an RBF bandwidth; pass sigma explicitly")
            s2 = (median_scale ** 2) * med
        else:
            if not (float(sigma) > 0 and math.isfinite(float(sigma))):
                raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
            s2 = float(sigma) ** 2
        return torch.exp(-d2 / (2.0 * s2))
    raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")


def _cka_ratio(kl, kk, ll, what: str) -> float:
    kk, ll = float(kk), float(ll)
    if kk <= 0 or ll <= 0:
        which = "a" if kk <= 0 else "b"
        raise ValueError(f"{what} is undefined: HSIC({which}, {which}) = {min(kk, ll):.3g} <= 0 "
                         f"({which} has no variance across samples, e.g. all rows identical, or too "
                         "few samples for the unbiased estimator)")
    return float(kl) / math.sqrt(kk * ll)


def _linear_cka_features(A: torch.Tensor, B: torch.Tensor, unbiased: bool) -> float:
    """Linear CKA from the features in O(n d_a d_b), never forming an n x n matrix."""
    A, B = A.double(), B.double()
    n = A.shape[0]
    if not unbiased:
        Ac, Bc = A - A.mean(0), B - B.mean(0)
        kl = (Ac.T @ Bc).square().sum()
        kk = (Ac.T @ Ac).square().sum()
        ll = (Bc.T @ Bc).square().sum()
        return _cka_ratio(kl, kk, ll, "CKA")

    def parts(X):
        diag = (X * X).sum(1)                      # K_ii
        col = X.sum(0)                             # X^T 1
        total = col @ col - diag.sum()             # 1^T K~ 1
        rows = X @ col - diag                      # K~ 1
        return diag, total, rows

    def u(X, Y, px, py):
        dx, tx, rx = px
        dy, ty, ry = py
        trace = (X.T @ Y).square().sum() - (dx * dy).sum()
        return (trace + tx * ty / ((n - 1) * (n - 2)) - 2.0 * (rx @ ry) / (n - 2)) / (n * (n - 3))

    pa, pb = parts(A), parts(B)
    return _cka_ratio(u(A, B, pa, pb), u(A, A, pa, pa), u(B, B, pb, pb), "unbiased CKA")


@_threads_by_size
def cka(a, b, kernel: str = "linear", sigma: float | str = 1.0, unbiased: bool = False,
        median_scale: float = 1.0) -> float:
    r"""Centred kernel alignment (Kornblith et al. 2019).

    .. math:: \mathrm{CKA}(K, L) = \frac{\mathrm{HSIC}(K, L)}{\sqrt{\mathrm{HSIC}(K, K)\,\mathrm{HSIC}(L, L)}}

    with :math:`K_{ij} = k(a_i, a_j)`, :math:`L_{ij} = k(b_i, b_j)`.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    kernel : {"linear", "rbf"}
        ``linear``: :math:`a_i^\top a_j`. ``rbf``: :math:`\exp(-\|a_i - a_j\|^2 / (2\sigma^2))`.
    sigma : float or "median"
        RBF bandwidth. ``"median"``: ``median_scale`` times the square root of the median squared
        distance over the full n x n matrix, diagonal included (Kornblith et al.'s convention).
    unbiased : bool
        Use the unbiased HSIC of Song et al. (2012) (needs n >= 4). The biased estimator is inflated
        when d is large compared with n (:func:`chance`).
    median_scale : float
        Only for ``sigma="median"``.

    Returns
    -------
    float
        Biased: in [0, 1]. Unbiased: at most 1, can be slightly negative; about 0 for unrelated data.

    Notes
    -----
    Linear CKA is computed from the features (O(n d_a d_b)) or from the n x n Gram matrices,
    whichever is cheaper; both give the same number. Computed in float64, no epsilon.
    """
    A, B = _pair(a, b)
    n = A.shape[0]
    if unbiased and n < 4:
        raise ValueError(f"unbiased CKA needs n >= 4 samples (it divides by n(n-3)), got n={n}")
    if kernel == "linear":
        da, db = A.shape[1], B.shape[1]
        feature_cost = n * (da * db + da * da + db * db)
        gram_cost = n * n * (da + db + 3)
        if feature_cost <= gram_cost:
            return _linear_cka_features(A, B, unbiased)
    K = _gram(A, kernel, sigma, median_scale)
    L = _gram(B, kernel, sigma, median_scale)
    f = _hsic_unbiased if unbiased else _hsic_biased
    return _cka_ratio(f(K, L), f(K, K), f(L, L), "unbiased CKA" if unbiased else "CKA")


@_threads_by_size
def unbiased_cka(a, b, kernel: str = "linear", sigma: float | str = 1.0, median_scale: float = 1.0) -> float:
    """CKA with the unbiased HSIC estimator: :func:`cka` with ``unbiased=True``.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b), n >= 4
    kernel, sigma, median_scale
        As in :func:`cka`.

    Returns
    -------
    float
        About 0 for unrelated representations whatever d/n; 1 for identical ones.
    """
    return cka(a, b, kernel=kernel, sigma=sigma, unbiased=True, median_scale=median_scale)


def _cknna_mask(G: torch.Tensor, k: int, unbiased: bool) -> torch.Tensor:
    """0/1 matrix marking each row's top-k entries of a kernel (diagonal excluded when unbiased)."""
    Gh = G.clone()
    if unbiased:
        Gh.fill_diagonal_(-math.inf)
    idx = torch.topk(Gh, k, dim=1).indices
    return torch.zeros_like(G).scatter_(1, idx, 1.0)


def _cknna_hsic(K, L, mK, mL, unbiased: bool) -> torch.Tensor:
    mask = mK * mL
    f = _hsic_unbiased if unbiased else _hsic_biased
    return f(mask * K, mask * L)


def _cknna_from_grams(K: torch.Tensor, L: torch.Tensor, k: int, unbiased: bool) -> float:
    mK, mL = _cknna_mask(K, k, unbiased), _cknna_mask(L, k, unbiased)
    kl = _cknna_hsic(K, L, mK, mL, unbiased)
    kk = _cknna_hsic(K, K, mK, mK, unbiased)
    ll = _cknna_hsic(L, L, mL, mL, unbiased)
    return _cka_ratio(kl, kk, ll, "CKNNA")


@_threads_by_size
def cknna(a, b, k: int | None = 10, unbiased: bool = True) -> float:
    r"""Centred kernel nearest-neighbour alignment (Huh et al. 2024): CKA restricted to mutual neighbours.

    For each of (K, L), (K, K), (L, L) with linear kernels :math:`K = AA^\top`, :math:`L = BB^\top`:
    take each row's top-k entries (diagonal excluded when ``unbiased``), keep the entries that are
    top-k in *both* kernels (mask :math:`M`), and compute HSIC of :math:`M \odot K` and :math:`M \odot L`.
    The score is :math:`\mathrm{HSIC}_{KL} / \sqrt{\mathrm{HSIC}_{KK}\mathrm{HSIC}_{LL}}`.
    This follows the official code (not the formula in the paper's appendix).

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b), n >= 4
    k : int or None
        Neighbours, 2 <= k <= n - 1. ``None`` means k = n - 1 (every pair), and then CKNNA equals
        :func:`unbiased_cka`; the official function crashes for ``None``.
    unbiased : bool
        Unbiased HSIC and the diagonal excluded from the top-k (the official default).

    Returns
    -------
    float

    Notes
    -----
    Not symmetric in general: the masked kernels are not symmetric matrices, and the official unbiased
    HSIC of two non-symmetric matrices changes when they are swapped (its ``1^T K L 1`` term).
    O(n^2) memory (dense masks; the metric needs the masked kernels).
    """
    A, B = _pair(a, b)
    n = A.shape[0]
    if n < 4:
        raise ValueError(f"CKNNA needs n >= 4 samples (unbiased HSIC divides by n(n-3)), got n={n}")
    k = n - 1 if k is None else _check_k(k, n, minimum=2)
    A, B = A.double(), B.double()
    return _cknna_from_grams(A @ A.T, B @ B.T, k, unbiased)


# ------------------------------------------------------------------------------------------------
# SVCCA, RSA, Procrustes, linear predictivity
# ------------------------------------------------------------------------------------------------
def _zscore(X: torch.Tensor, name: str) -> torch.Tensor:
    X = X.double()
    X = X - X.mean(0)
    sd = X.std(dim=0)
    flat = (sd == 0).nonzero().flatten().tolist()
    if flat:
        raise ValueError(f"{name} has zero-variance features (columns {flat[:10]}"
                         f"{'...' if len(flat) > 10 else ''}); SVCCA divides by each feature's standard "
                         "deviation: drop those columns first")
    return X / sd


def _top_left_singular(X: torch.Tensor, dim: int, name: str) -> torch.Tensor:
    U, S, _ = torch.linalg.svd(X, full_matrices=False)
    tol = S[0] * max(X.shape) * torch.finfo(S.dtype).eps
    if S.numel() < dim or bool(S[dim - 1] <= tol):
        rank = int((S > tol).sum())
        raise ValueError(f"{name} has rank {rank} after z-scoring, less than dim={dim}; lower dim")
    return U[:, :dim]


@_threads_by_size
def svcca(a, b, dim: int = 10) -> float:
    """Singular vector canonical correlation analysis (Raghu et al. 2017), as in the official code.

    z-score every feature, keep the top ``dim`` left singular vectors of each side, and average the
    ``dim`` canonical correlations between the two subspaces.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    dim : int
        Singular directions kept per side; at most min(d_a, d_b, n - 1).

    Returns
    -------
    float
        In [0, 1]; 1 when the top-``dim`` subspaces coincide.

    Notes
    -----
    Both bases are orthonormal and centred, so the canonical correlations are exactly the singular
    values of :math:`U_A^\\top U_B` (the cosines of the principal angles). This is deterministic; the
    official code uses a randomised SVD, sklearn's iterative CCA and added noise, so it varies run to
    run by about 1e-3.
    """
    A, B = _pair(a, b)
    n = A.shape[0]
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if dim > min(A.shape[1], B.shape[1], n - 1):
        raise ValueError(f"dim={dim} exceeds min(d_a, d_b, n - 1) = {min(A.shape[1], B.shape[1], n - 1)}")
    Ua = _top_left_singular(_zscore(A, "a"), dim, "a")
    Ub = _top_left_singular(_zscore(B, "b"), dim, "b")
    rho = torch.linalg.svdvals(Ua.T @ Ub).clamp(max=1.0)
    return float(rho.mean())


def _condensed_distances(X: torch.Tensor, distance: str) -> torch.Tensor:
    X = X.double()
    if distance == "euclidean":
        D = _sq_dists(X).sqrt()
    elif distance in ("cosine", "correlation"):
        if distance == "correlation":
            X = X - X.mean(dim=1, keepdim=True)
        norms = X.norm(dim=1)
        zero = (norms == 0).nonzero().flatten().tolist()
        if zero:
            raise ValueError(f"{distance} distance is undefined for rows {zero[:10]} (zero norm"
                             f"{' after centring' if distance == 'correlation' else ''})")
        Xn = X / norms[:, None]
        D = 1.0 - Xn @ Xn.T
    else:
        raise ValueError(f"distance must be 'euclidean', 'cosine' or 'correlation', got {distance!r}")
    iu = torch.triu_indices(X.shape[0], X.shape[0], offset=1, device=X.device)
    return D[iu[0], iu[1]]


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..m of a 1-D tensor, ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    values, order = torch.sort(v, stable=True)
    _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    group_rank = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty_like(group_rank[inverse])
    ranks[order] = group_rank[inverse]
    return ranks


def _pearson(u: torch.Tensor, v: torch.Tensor) -> float:
    u = u - u.mean()
    v = v - v.mean()
    return float((u @ v) / torch.sqrt((u @ u) * (v @ v)))


@_threads_by_size
def rsa(a, b, method: str = "spearman", distance: str = "euclidean") -> float:
    """Representational similarity analysis (Kriegeskorte et al. 2008).

    Rank correlation between the two representational dissimilarity matrices (their upper triangles).

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b), n >= 3
    method : {"spearman", "kendall"}
        Spearman's rho or Kendall's tau-b.
    distance : {"euclidean", "cosine", "correlation"}
        Dissimilarity between two samples.

    Returns
    -------
    float
        In [-1, 1]; about 0 for unrelated representations.

    Notes
    -----
    Spearman runs in torch (on the input's device; ties get average ranks); Kendall's tau-b runs on
    the CPU with SciPy.
    """
    A, B = _pair(a, b)
    if method not in ("spearman", "kendall"):
        raise ValueError(f"method must be 'spearman' or 'kendall', got {method!r}")
    if A.shape[0] < 3:
        raise ValueError("RSA needs n >= 3 samples (at least 3 pairwise distances)")
    da = _condensed_distances(A, distance)
    db = _condensed_distances(B, distance)
    for name, d in (("a", da), ("b", db)):
        if bool(d.max() == d.min()):
            raise ValueError(f"all pairwise distances of {name} are equal: a rank correlation is undefined")
    if method == "spearman":
        return _pearson(_average_ranks(da), _average_ranks(db))
    from scipy import stats

    return float(stats.kendalltau(da.cpu().numpy(), db.cpu().numpy()).statistic)


def _procrustes_nuclear(A: torch.Tensor, B: torch.Tensor) -> float:
    A, B = A.double(), B.double()
    A = A - A.mean(0)
    B = B - B.mean(0)
    na, nb = A.norm(), B.norm()
    for name, v in (("a", na), ("b", nb)):
        if float(v) == 0:
            raise ValueError(f"{name} has no variance across samples (all rows identical): Procrustes "
                             "alignment divides by its Frobenius norm")
    return float(torch.linalg.matrix_norm((A / na).T @ (B / nb), ord="nuc").clamp(max=1.0))


@_threads_by_size
def procrustes_similarity(a, b) -> float:
    r"""Orthogonal Procrustes similarity: the nuclear norm :math:`\|\tilde A^\top \tilde B\|_*`.

    :math:`\tilde A, \tilde B` are the column-centred features scaled to unit Frobenius norm. It is the
    largest correlation reachable by rotating/reflecting one representation onto the other (zero-padding
    the narrower one), in [0, 1]; 1 minus half the squared :func:`procrustes_distance`.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)

    Returns
    -------
    float
    """
    A, B = _pair(a, b)
    return _procrustes_nuclear(A, B)


@_threads_by_size
def procrustes_distance(a, b, angular: bool = False) -> float:
    r"""Orthogonal Procrustes distance (Williams et al. 2021), a metric between shapes.

    .. math:: d(A, B) = \min_{Q^\top Q = I} \|\tilde A - \tilde B Q\|_F = \sqrt{2 - 2\|\tilde A^\top \tilde B\|_*}

    on column-centred features scaled to unit Frobenius norm (translation, rotation, reflection and
    isotropic scale are factored out; the narrower side is zero-padded).

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    angular : bool
        Return the angle :math:`\arccos \|\tilde A^\top \tilde B\|_*` (radians, in [0, pi/2]) instead.

    Returns
    -------
    float
        0 for identical shapes. Euclidean form in [0, sqrt(2)]. A *distance*: lower means more aligned.
    """
    nuc = procrustes_similarity(a, b)
    if angular:
        return float(math.acos(nuc))
    return float(math.sqrt(max(2.0 - 2.0 * nuc, 0.0)))


def _ridge_fit_loo(X: torch.Tensor, Y: torch.Tensor, alphas: torch.Tensor):
    r"""Ridge regression with intercept, penalty chosen by exact leave-one-out error.

    With the centred training inputs :math:`X_c = U S V^\top`, the hat matrix of penalty
    :math:`\alpha` is :math:`H = \mathbf 1\mathbf 1^\top/m + U \,\mathrm{diag}(s^2/(s^2+\alpha))\, U^\top`
    and the leave-one-out residual of sample i is :math:`(y_i - \hat y_i)/(1 - H_{ii})`; no refits.

    Returns the coefficients (p x q), the intercept (q,) and the chosen alpha.
    """
    m = X.shape[0]
    x_mean, y_mean = X.mean(0), Y.mean(0)
    Xc, Yc = X - x_mean, Y - y_mean
    U, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
    UtY = U.T @ Yc                                                   # (r, q)
    best = None
    for alpha in alphas:
        shrink = S**2 / (S**2 + alpha)                               # (r,)
        fitted = U @ (shrink[:, None] * UtY)
        h = 1.0 / m + (U**2) @ shrink
        loo = ((Yc - fitted) / (1.0 - h)[:, None]).square().mean()
        if best is None or bool(loo < best[0]):
            best = (loo, alpha)
    alpha = best[1]
    W = Vh.T @ ((S / (S**2 + alpha))[:, None] * UtY)
    return W, y_mean - x_mean @ W, float(alpha)


@_threads_by_size
def linear_predictivity(a, b, alphas: Sequence[float] = tuple(np.logspace(-3, 3, 13)), folds: int = 5,
                        seed: int = 0) -> float:
    r"""Cross-validated ridge-regression R^2 of predicting ``b`` from ``a`` (asymmetric).

    The samples are split into ``folds`` folds (shuffled with ``seed``). For each fold a ridge
    regression with intercept from ``a`` to ``b`` is fitted on the other folds, its penalty chosen
    among ``alphas`` by exact leave-one-out error inside those training folds; the held-out
    predictions of all folds are pooled and scored with the variance-weighted R^2 over ``b``'s
    features: :math:`1 - \sum_j \mathrm{SSE}_j / \sum_j \mathrm{SST}_j`.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    alphas : sequence of float
        Positive ridge penalties to choose from.
    folds : int
        2 <= folds <= n.
    seed : int
        Shuffles the fold assignment.

    Returns
    -------
    float
        At most 1; about 0 or below for unrelated representations.

    Notes
    -----
    Computed in torch (float64, on the input's device); with one penalty it agrees with
    scikit-learn's ``Ridge`` on the same folds.
    """
    A, B = _pair(a, b)
    n = A.shape[0]
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= n:
        raise ValueError(f"folds must be an integer between 2 and n = {n}, got {folds!r}")
    alphas_t = torch.as_tensor(np.asarray(alphas, dtype=float), dtype=torch.float64, device=A.device).flatten()
    if alphas_t.numel() == 0 or not bool((alphas_t > 0).all()):
        raise ValueError(f"alphas must be positive ridge penalties, got {list(alphas)}")
    X, Y = A.double(), B.double()
    sst = (Y - Y.mean(0)).square().sum()
    if float(sst) == 0:
        raise ValueError("b has no variance across samples: R^2 divides by it")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n)).to(A.device)
    pred = torch.empty_like(Y)
    for test in torch.tensor_split(order, folds):
        train = torch.ones(n, dtype=torch.bool, device=A.device)
        train[test] = False
        W, c, _ = _ridge_fit_loo(X[train], Y[train], alphas_t)
        pred[test] = X[test] @ W + c
    return float(1.0 - (Y - pred).square().sum() / sst)


# ------------------------------------------------------------------------------------------------
# one entry point for every metric
# ------------------------------------------------------------------------------------------------
def _metric_fn(metric: str, k: int | None, **kw) -> Callable:
    if metric in NEIGHBOUR_METRICS:
        return lambda a, b: _neighbour_metric(metric, a, b, k)
    if metric == "cka":
        return lambda a, b: cka(a, b, **kw)
    if metric == "unbiased_cka":
        return lambda a, b: unbiased_cka(a, b, **kw)
    if metric == "cknna":
        return lambda a, b: cknna(a, b, k=k, **kw)
    if metric == "svcca":
        return lambda a, b: svcca(a, b, **kw)
    if metric == "rsa":
        return lambda a, b: rsa(a, b, **kw)
    if metric == "procrustes":
        return lambda a, b: procrustes_similarity(a, b, **kw)
    if metric == "linear_predictivity":
        return lambda a, b: linear_predictivity(a, b, **kw)
    raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")


@_threads_by_size
def measure(a, b, metric: str = "mutual_knn", k: int | None = 10, **kwargs) -> float:
    """Any metric by name (``"procrustes"`` means :func:`procrustes_similarity`, higher = more aligned).

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    metric : str
        One of :data:`METRICS`.
    k : int or None
        Neighbours, for the neighbour metrics and :func:`cknna`; ignored by the others.
    **kwargs
        Passed to the metric (e.g. ``kernel="rbf"`` for ``"cka"``, ``method="kendall"`` for ``"rsa"``).

    Returns
    -------
    float
    """
    return _metric_fn(metric, k, **kwargs)(a, b)


def max_score(metric: str, k: int | None = 10) -> float:
    """The largest value a metric can take (k for :func:`lcs_knn`, else 1); used by :func:`calibrate`."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if metric == "lcs_knn":
        if k is None:
            raise ValueError("lcs_knn needs k (its maximum is k)")
        return float(k)
    return 1.0


# ------------------------------------------------------------------------------------------------
# the paper's protocol: clamp, normalise, best layer pair
# ------------------------------------------------------------------------------------------------
def _clamp_threshold(mats: list[torch.Tensor], q: float) -> torch.Tensor:
    """The official "exact" quantile ``sorted(|x|)[int(q * numel)]`` over all layers, by selection
    (O(numel)) instead of a full sort."""
    numel = sum(m.numel() for m in mats)
    index = min(int(q * numel), numel - 1)
    if mats[0].device.type == "cpu":
        flat = np.concatenate([np.abs(m.numpy()).ravel() for m in mats])
        return torch.tensor(np.partition(flat, index)[index])
    flat = torch.cat([m.abs().flatten() for m in mats])
    return torch.kthvalue(flat, index + 1).values


def _normalise_rows(m: torch.Tensor, name: str) -> torch.Tensor:
    norms = m.norm(dim=1, keepdim=True)
    zero = (norms.flatten() == 0).nonzero().flatten().tolist()
    if zero:
        raise ValueError(f"{name}: rows {zero[:10]} are all zero and cannot be l2-normalised")
    return m / norms


def _prepare_list(mats: list[torch.Tensor], q: float, name: str) -> list[torch.Tensor]:
    if not (isinstance(q, (int, float)) and 0 < q <= 1):
        raise ValueError(f"q must be in (0, 1], got {q!r}")
    if q < 1:
        t = _clamp_threshold(mats, q).to(mats[0].device)
        if float(t) == 0:
            raise ValueError(f"the {q} quantile of |{name}| is 0 (mostly zeros): clamping would zero every "
                             "row; use a larger q or q=1 (no clamping)")
        mats = [m.clamp(-t, t) for m in mats]
    return [_normalise_rows(m, f"{name}[layer {i}]") for i, m in enumerate(mats)]


@_threads_by_size
def prepare(feats, q: float = 0.95):
    """The paper's feature preparation: clamp outliers, then l2-normalise each row of each layer.

    The clamp threshold is the exact ``q``-quantile of :math:`|x|` over the *whole* input (all layers
    together), taken as in the official code: ``sorted(|x|)[int(q * numel)]``. No mean-centring.

    Parameters
    ----------
    feats : array-like or torch.Tensor of shape (n, d) or (n, L, d), or a list of (n, d_l) layers
    q : float
        In (0, 1]; ``q = 1`` skips the clamp.

    Returns
    -------
    Same kind and shape as ``feats`` (NumPy in, NumPy out; a list gives a list of tensors/arrays).

    Raises
    ------
    ValueError
        for NaN/inf, a zero row (cannot be normalised), or a zero clamp threshold.
    """
    if isinstance(feats, (list, tuple)):
        mats = as_layers(feats, "feats")
        out = _prepare_list(mats, q, "feats")
        return [_like(o, f) for o, f in zip(out, feats)]
    t = _to_tensor(feats, "feats")
    if t.ndim == 2:
        out = _prepare_list([as_matrix(t, "feats")], q, "feats")[0]
    elif t.ndim == 3:
        out = torch.stack(_prepare_list(as_layers(t, "feats"), q, "feats"), dim=1)
    else:
        raise ValueError(f"feats must be n x d, n x L x d or a list of n x d layers, got shape {tuple(t.shape)}")
    return _like(out, feats)


def _gram_stack_ok(n: int, n_layers: int) -> bool:
    return n_layers * n * n * 8 <= GRAM_CACHE_BYTES


def _layer_scorer(metric: str, A: list[torch.Tensor], B: list[torch.Tensor], k: int | None,
                  **kw) -> Callable[[torch.Tensor | None], torch.Tensor]:
    """A function ``perm -> La x Lb`` score matrix of ``metric(A[i], B[j][perm])``.

    The expensive part of each layer (its neighbour lists, its centred Gram matrix) is computed once;
    permuting the rows of every B layer (for calibration) then only relabels/reindexes it.
    """
    n = A[0].shape[0]
    if B[0].shape[0] != n:
        raise ValueError(f"layers_a and layers_b must describe the same samples: {n} vs {B[0].shape[0]} rows")
    device = A[0].device
    B = [y.to(device) for y in B]
    La, Lb = len(A), len(B)

    if metric in NEIGHBOUR_METRICS:
        k = _check_k(k, n)
        lists = _knn_all(list(A) + list(B), k)              # every layer's neighbours, once
        ka, kb = lists[:La], torch.stack(lists[La:])        # kb: (Lb, n, k)

        def score(perm=None):
            kbp = _relabel(kb, perm)
            return torch.stack([_neighbour_rows(metric, ka_i, kbp).mean(dim=-1) for ka_i in ka])
        return score

    kernel_ok = (metric == "cka" and kw.get("kernel", "linear") in ("linear", "rbf")) or metric == "unbiased_cka"
    if kernel_ok and _gram_stack_ok(n, La + Lb):
        unbiased = metric == "unbiased_cka" or bool(kw.get("unbiased", False))
        if unbiased and n < 4:
            raise ValueError(f"unbiased CKA needs n >= 4 samples, got n={n}")
        kernel, sigma, scale = kw.get("kernel", "linear"), kw.get("sigma", 1.0), kw.get("median_scale", 1.0)
        Ks = [_gram(x, kernel, sigma, scale) for x in A]
        Ls = [_gram(y, kernel, sigma, scale) for y in B]
        if unbiased:
            for G in Ks + Ls:
                G.fill_diagonal_(0)
            Kf = torch.stack([K.flatten() for K in Ks])
            Lf = torch.stack([L.flatten() for L in Ls])
            Ksum, Lsum = Kf.sum(1), Lf.sum(1)
            Krow = torch.stack([K.sum(1) for K in Ks])
            Lrow = torch.stack([L.sum(1) for L in Ls])
            c1, c2, c3 = 1.0 / ((n - 1) * (n - 2)), 2.0 / (n - 2), 1.0 / (n * (n - 3))
            kk = ((Kf * Kf).sum(1) + Ksum * Ksum * c1 - c2 * (Krow * Krow).sum(1)) * c3
            ll = ((Lf * Lf).sum(1) + Lsum * Lsum * c1 - c2 * (Lrow * Lrow).sum(1)) * c3
        else:
            Kf = torch.stack([_center(K).flatten() for K in Ks])
            Lf = torch.stack([_center(L).flatten() for L in Ls])
            kk, ll = (Kf * Kf).sum(1), (Lf * Lf).sum(1)
        del Ks, Ls
        for name, v in (("a", kk), ("b", ll)):
            bad = (v <= 0).nonzero().flatten().tolist()
            if bad:
                raise ValueError(f"CKA is undefined: layers {bad} of {name} have HSIC <= 0 (no variance)")
        denom = torch.sqrt(kk[:, None] * ll[None, :])

        def score(perm=None):
            if perm is None:
                Lp, Lrow_p = Lf, (Lrow if unbiased else None)
            else:
                Lp = Lf.view(Lb, n, n)[:, perm][:, :, perm].reshape(Lb, n * n)
                Lrow_p = Lrow[:, perm] if unbiased else None
            kl = Kf @ Lp.T
            if unbiased:
                kl = (kl + Ksum[:, None] * Lsum[None, :] * c1 - c2 * (Krow @ Lrow_p.T)) * c3
            return kl / denom
        return score

    if metric == "cknna" and _gram_stack_ok(n, 2 * (La + Lb)):
        if n < 4:
            raise ValueError(f"CKNNA needs n >= 4 samples, got n={n}")
        kn = n - 1 if k is None else _check_k(k, n, minimum=2)
        unbiased = kw.get("unbiased", True)
        Ks = [x.double() @ x.double().T for x in A]
        Ls = [y.double() @ y.double().T for y in B]
        mKs = [_cknna_mask(K, kn, unbiased) for K in Ks]
        mLs = [_cknna_mask(L, kn, unbiased) for L in Ls]
        kk = [float(_cknna_hsic(K, K, m, m, unbiased)) for K, m in zip(Ks, mKs)]
        ll = [float(_cknna_hsic(L, L, m, m, unbiased)) for L, m in zip(Ls, mLs)]

        def score(perm=None):
            out = torch.empty((La, Lb), dtype=torch.float64, device=device)
            for j, (L, mL) in enumerate(zip(Ls, mLs)):
                if perm is not None:  # the top-k mask of a permuted kernel is the permuted mask
                    L, mL = L[perm][:, perm], mL[perm][:, perm]
                for i, (K, mK) in enumerate(zip(Ks, mKs)):
                    out[i, j] = _cka_ratio(_cknna_hsic(K, L, mK, mL, unbiased), kk[i], ll[j], "CKNNA")
            return out
        return score

    if (metric == "rsa" and kw.get("method", "spearman") == "spearman" and _gram_stack_ok(n, La + Lb)
            and n >= 3):
        # Permuting B's rows permutes its distance matrix, hence its matrix of ranks: rank once.
        distance = kw.get("distance", "euclidean")
        iu = torch.triu_indices(n, n, offset=1, device=device)

        def centred_rank_matrix(x, name):
            d = _condensed_distances(x, distance)
            if bool(d.max() == d.min()):
                raise ValueError(f"all pairwise distances of {name} are equal: a rank correlation is undefined")
            r = _average_ranks(d)
            r = r - r.mean()
            full = torch.zeros((n, n), dtype=torch.float64, device=device)
            full[iu[0], iu[1]] = r / r.norm()
            return full + full.T

        RA = torch.stack([centred_rank_matrix(x, "a")[iu[0], iu[1]] for x in A])      # (La, m)
        RB = [centred_rank_matrix(y, "b") for y in B]

        def score(perm=None):
            cols = [(R if perm is None else R[perm][:, perm])[iu[0], iu[1]] for R in RB]
            return RA @ torch.stack(cols).T
        return score

    fn = _metric_fn(metric, k, **kw)

    def score(perm=None):
        out = torch.empty((La, Lb), dtype=torch.float64, device=device)
        for j, y in enumerate(B):
            yp = y if perm is None else y[perm]
            for i, x in enumerate(A):
                out[i, j] = fn(x, yp)
        return out
    return score


@_threads_by_size
def layer_scores(layers_a, layers_b, metric: str = "mutual_knn", k: int | None = 10, q: float | None = 0.95,
                 **kwargs) -> np.ndarray:
    """The metric for every (layer of A, layer of B) pair, after the paper's :func:`prepare`.

    Parameters
    ----------
    layers_a, layers_b : n x L x d arrays/tensors or lists of n x d_l layers
    metric : str
        One of :data:`METRICS`.
    k : int or None
        Neighbours (neighbour metrics and CKNNA).
    q : float or None
        Clamp quantile for :func:`prepare`; ``None`` uses the layers as given (no clamp, no
        normalisation).
    **kwargs
        Passed to the metric.

    Returns
    -------
    numpy.ndarray, shape (L_a, L_b)

    Notes
    -----
    Each layer's neighbour lists (or kernel matrix) are computed once and reused for every pair.
    """
    A, B = _prepared_layers(layers_a, layers_b, q)
    return _layer_scorer(metric, A, B, k, **kwargs)(None).cpu().numpy()


def _prepared_layers(layers_a, layers_b, q):
    A, B = as_layers(layers_a, "layers_a"), as_layers(layers_b, "layers_b")
    if A[0].shape[0] != B[0].shape[0]:
        raise ValueError(f"layers_a and layers_b must describe the same samples: {A[0].shape[0]} vs "
                         f"{B[0].shape[0]} rows")
    if q is not None:
        A, B = _prepare_list(A, q, "layers_a"), _prepare_list(B, q, "layers_b")
    return A, B


@_threads_by_size
def best_layer_pair(layers_a, layers_b, metric: str = "mutual_knn", k: int | None = 10,
                    q: float | None = 0.95, **kwargs) -> tuple[float, tuple[int, int]]:
    """The paper's alignment score of two models: the best layer pair, floored at 0.

    Clamp each model's whole tensor at its exact ``q``-quantile of :math:`|x|`, l2-normalise each
    layer's rows (:func:`prepare`), compute the metric for every layer pair, and return the maximum
    (floored at 0, as the official loop starts its running best at 0) with its layer indices.

    Parameters
    ----------
    layers_a, layers_b : n x L x d arrays/tensors or lists of n x d_l layers
    metric : str
        One of :data:`METRICS`.
    k : int or None
    q : float or None
        ``None`` skips :func:`prepare`.
    **kwargs
        Passed to the metric.

    Returns
    -------
    score : float
        ``max(0, max_ij metric(A_i, B_j))``.
    (i, j) : tuple of int
        The arg-max pair (first in row-major order on ties). Unlike the official code, the pair is
        returned even when no pair scores above 0.

    Notes
    -----
    The maximum over many pairs is biased upwards under the null: use :func:`calibrate_layers`.
    """
    scores = layer_scores(layers_a, layers_b, metric=metric, k=k, q=q, **kwargs)
    flat = int(np.argmax(scores))
    i, j = divmod(flat, scores.shape[1])
    return max(0.0, float(scores[i, j])), (i, j)


# ------------------------------------------------------------------------------------------------
# chance levels, permutation calibration, bootstrap
# ------------------------------------------------------------------------------------------------
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
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if metric in ("mutual_knn", "cycle_knn"):
        if k is None:
            raise ValueError(f"chance({metric!r}) needs k")
        k = _check_k(k, n)
        p = k / (n - 1)
        return p if metric == "mutual_knn" else 1.0 - (1.0 - p) ** k
    if metric == "cka":
        if d_a is None:
            raise ValueError("chance('cka') needs d_a (and d_b if different)")
        d_b = d_a if d_b is None else d_b
        if d_a < 1 or d_b < 1:
            raise ValueError(f"d_a and d_b must be >= 1, got {d_a}, {d_b}")
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


def _check_permutations(permutations, alpha):
    if isinstance(permutations, bool) or not isinstance(permutations, (int, np.integer)) or permutations < 1:
        raise ValueError(f"permutations must be a positive integer, got {permutations!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _summarise(observed: float, null: np.ndarray, alpha: float, s_max: float, metric: str,
               layers=None) -> CalibrationResult:
    K = null.size
    pooled = np.sort(np.concatenate([[observed], null]))
    rank = math.ceil((1 - Fraction(str(alpha))) * (K + 1))  # exact rational arithmetic: no 95.000001
    tau = float(pooled[min(max(rank, 1), K + 1) - 1])
    p = (1 + int(np.sum(null >= observed))) / (K + 1)
    calibrated = 0.0 if tau >= s_max else max((observed - tau) / (s_max - tau), 0.0)
    return CalibrationResult(score=float(observed), threshold=tau, p_value=p, calibrated=float(calibrated),
                             null=null, s_max=s_max, alpha=alpha, metric=metric, layers=layers)


def _perms(n: int, permutations: int, seed: int, device) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.permutation(n)).to(device) for _ in range(permutations)]


@_threads_by_size
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
        One of :data:`METRICS`; ``"procrustes"`` is :func:`procrustes_similarity`.
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
    _check_permutations(permutations, alpha)
    A, B = _pair(a, b)
    scorer = _layer_scorer(metric, [A], [B], k, **kwargs)
    observed = float(scorer(None)[0, 0])
    null = np.array([float(scorer(p)[0, 0]) for p in _perms(A.shape[0], permutations, seed, A.device)])
    return _summarise(observed, null, alpha, max_score(metric, k), metric)


@_threads_by_size
def calibrate_layers(layers_a, layers_b, metric: str = "mutual_knn", k: int | None = 10,
                     q: float | None = 0.95, permutations: int = 200, alpha: float = 0.05, seed: int = 0,
                     **kwargs) -> CalibrationResult:
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

    Returns
    -------
    CalibrationResult
        With ``.layers`` = the observed arg-max pair.
    """
    _check_permutations(permutations, alpha)
    A, B = _prepared_layers(layers_a, layers_b, q)
    scorer = _layer_scorer(metric, A, B, k, **kwargs)
    obs = scorer(None)
    flat = int(torch.argmax(obs))
    layers = divmod(flat, obs.shape[1])
    observed = max(0.0, float(obs.flatten()[flat]))
    null = np.array([max(0.0, float(scorer(p).max())) for p in _perms(A[0].shape[0], permutations, seed,
                                                                      A[0].device)])
    return _summarise(observed, null, alpha, max_score(metric, k), metric, layers=layers)


@dataclass
class BootstrapResult:
    """A bootstrap percentile confidence interval.

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
        ``"queries"`` (neighbour metrics: resample the per-sample terms) or ``"rows"`` (resample rows
        and recompute).
    """

    score: float
    low: float
    high: float
    level: float
    samples: np.ndarray = field(repr=False)
    method: str = "rows"


@_threads_by_size
def bootstrap_ci(a, b, metric: str = "mutual_knn", k: int | None = 10, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0, **kwargs) -> BootstrapResult:
    """Percentile bootstrap confidence interval of an alignment score over samples.

    Neighbour metrics are means of per-sample terms (:func:`per_sample_scores`): their replicates
    resample those terms with the neighbour lists fixed (resampling rows with replacement would create
    duplicate rows that are each other's nearest neighbours in both models, inflating the score). The
    interval therefore reflects which *queries* were drawn, for a fixed gallery. Other metrics resample
    rows with replacement and recompute.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    metric : str
        One of :data:`METRICS` except ``linear_predictivity`` (duplicated rows would leak between its
        cross-validation folds).
    k : int or None
    n_boot : int
        Bootstrap replicates.
    level : float
        Coverage in (0, 1).
    seed : int
    **kwargs
        Passed to the metric.

    Returns
    -------
    BootstrapResult
    """
    n_boot, level = _check_bootstrap(metric, n_boot, level)
    A, B = _pair(a, b)
    idx = np.random.default_rng(seed).integers(0, A.shape[0], size=(n_boot, A.shape[0]))
    score, samples, method = _replicates(A, B, metric, k, kwargs, idx)
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return BootstrapResult(score=score, low=float(low), high=float(high), level=level, samples=samples,
                           method=method)


# ------------------------------------------------------------------------------------------------
# meta-statistics: exact permutation rule, rank correlations over items, paired differences
# ------------------------------------------------------------------------------------------------
def _null_vector(null, name: str = "null") -> np.ndarray:
    arr = _to_tensor(null, name).double().cpu().numpy().ravel()
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
    from ._checks import check_float

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
    from ._checks import check_float

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
        Two-sided compares |rho| with the |null| values; ``"greater"`` tests a positive association.
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
    from ._checks import check_choice, check_float, check_int, check_seed

    method = check_choice(method, "method", ("spearman", "kendall"))
    alternative = check_choice(alternative, "alternative", ("two-sided", "greater", "less"))
    n_boot = check_int(n_boot, "n_boot", minimum=1)
    permutations = check_int(permutations, "permutations", minimum=1)
    seed = check_seed(seed)
    alpha = check_float(alpha, "alpha", 0, 1, low_inclusive=False, high_inclusive=False)
    xs = [_to_tensor(v, name).double().cpu().numpy() for v, name in ((x, "x"), (y, "y"))]
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


def _check_bootstrap(metric: str, n_boot, level) -> tuple[int, float]:
    from ._checks import check_float, check_int

    if metric == "linear_predictivity":
        raise ValueError("bootstrap_ci does not support linear_predictivity: duplicated rows leak between "
                         "cross-validation folds; repeat linear_predictivity with different seeds instead")
    n_boot = check_int(n_boot, "n_boot", minimum=1)
    level = check_float(level, "level", 0, 1, low_inclusive=False, high_inclusive=False)
    return n_boot, level


def _replicates(A: torch.Tensor, B: torch.Tensor, metric: str, k, kw: dict,
                idx: np.ndarray) -> tuple[float, np.ndarray, str]:
    """(score on all rows, one score per row of ``idx``, scheme) for the bootstrap.

    Neighbour metrics average their per-sample terms over the drawn queries (neighbour lists fixed);
    the others are recomputed on the drawn rows.
    """
    if metric in NEIGHBOUR_METRICS:
        rows = per_sample_scores(A, B, metric=metric, k=k)
        return float(rows.mean()), rows[idx].mean(axis=1), "queries"
    fn = _metric_fn(metric, k, **kw)
    samples = np.empty(idx.shape[0])
    for r, i in enumerate(idx):
        i = torch.from_numpy(i).to(A.device)
        samples[r] = fn(A[i], B[i])
    return float(fn(A, B)), samples, "rows"


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
        The resampling scheme of each side (``"queries"`` or ``"rows"``, as in :func:`bootstrap_ci`).
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
        Metric of the first pair (one of :data:`METRICS` except ``linear_predictivity``).
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
    The percentile interval of the paired differences. For the kernel and Procrustes metrics
    (``"rows"`` scheme) resampling with replacement duplicates rows, which inflates each score
    (see :func:`bootstrap_ci`); the pairing cancels only part of it, so prefer neighbour metrics or
    report those intervals as approximate.
    """
    second_metric = metric if second_metric is None else second_metric
    n_boot, level = _check_bootstrap(metric, n_boot, level)
    _check_bootstrap(second_metric, n_boot, level)
    pairs = []
    for name, pair in (("first", first), ("second", second)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name} must be a pair (a, b) of feature matrices, got {type(pair).__name__}")
        pairs.append(_pair(*pair))
    n = pairs[0][0].shape[0]
    if pairs[1][0].shape[0] != n:
        raise ValueError(f"first and second must be measured on the same items: {n} vs "
                         f"{pairs[1][0].shape[0]} rows")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    s1, r1, m1 = _replicates(*pairs[0], metric, k, dict(first_options or {}), idx)
    s2, r2, m2 = _replicates(*pairs[1], second_metric, k, dict(second_options or {}), idx)
    samples = r1 - r2
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return DifferenceResult(difference=s1 - s2, low=float(low), high=float(high), level=level, first=s1,
                            second=s2, samples=samples, method=m1 if m1 == m2 else f"{m1}/{m2}")
