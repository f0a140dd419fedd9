"""Neighbour metrics: one k-nearest-neighbour search and the four metrics built on its lists.

``similarities``    X X^T with the diagonal at -inf (a sample is never its own neighbour)
``knn``             each row's k most similar rows, most similar first (validated entry point)
``nearest``         the same without validation, in row blocks; ``nearest_many`` for several inputs
``neighbour_terms`` per-sample terms of a neighbour metric from two neighbour lists
``mutual_knn``, ``cycle_knn``, ``lcs_knn``, ``edit_distance_knn``, ``per_sample_scores``
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch

from .._checks import as_matrix, as_pair, check_choice, check_k, unit_scale
from .._threads import limited

#: Metrics computed from the two k-nearest-neighbour lists alone.
NEIGHBOUR_METRICS = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")

#: Neighbour metrics that use the *order* of each list, not only the set.
ORDERED_METRICS = ("lcs_knn", "edit_distance_knn")

#: Largest similarity matrix block (in elements) the neighbour search builds at once: 2**26 float32
#: values are 256 MB, so n = 40,000 samples need 40 blocks of ~1,700 rows instead of one n x n matrix.
CHUNK_ELEMENTS = 2**26


def similarities(x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
    """Dot products of ``x[rows]`` (default: all rows) with every row of ``x``, self pairs set to -inf.

    For all rows on the CPU NumPy computes ``X @ X.T`` with BLAS ``syrk`` (one triangle, mirrored:
    half the multiply-adds of a general product).
    """
    n = x.shape[0]
    if rows is None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        xn = x.contiguous().numpy()
        sims = torch.from_numpy(xn @ xn.T)
    else:
        rows = rows or slice(0, n)
        sims = x[rows] @ x.T
    start = 0 if rows is None else rows.start
    i = torch.arange(sims.shape[0], device=x.device)
    sims[i, i + start] = -math.inf
    return sims


def nearest(x: torch.Tensor, k: int, chunk_rows: int | None = None, queries: int | None = None) -> torch.Tensor:
    """:func:`knn` without validation; only the first ``queries`` rows when given (gallery = all rows)."""
    n = x.shape[0]
    m = n if queries is None else queries
    if chunk_rows is None and m * n <= CHUNK_ELEMENTS:
        sims = similarities(x, None if queries is None else slice(0, m))
        return torch.topk(sims, k, dim=1, largest=True, sorted=True).indices
    chunk_rows = max(1, int(chunk_rows or CHUNK_ELEMENTS // n))
    out = torch.empty((m, k), dtype=torch.long, device=x.device)
    for start in range(0, m, chunk_rows):
        sims = similarities(x, slice(start, min(m, start + chunk_rows)))
        out[start:start + sims.shape[0]] = torch.topk(sims, k, dim=1, largest=True, sorted=True).indices
        del sims
    return out


def knn(x, k: int = 10, chunk_rows: int | None = None) -> torch.Tensor:
    """Indices of each row's k nearest neighbours by dot product, most similar first, self excluded.

    Parameters
    ----------
    x : array-like or torch.Tensor, shape (n, d)
    k : int
        1 <= k <= n - 1.
    chunk_rows : int, optional
        Rows of the similarity matrix built at once. Default: the whole matrix when it holds at most
        ``CHUNK_ELEMENTS`` values, else blocks of ``CHUNK_ELEMENTS // n`` rows, so memory stays
        O(n * chunk_rows), never O(n^2).

    Returns
    -------
    torch.Tensor, shape (n, k), int64
        On the device of ``x``; row i lists i's neighbours by decreasing dot product.

    Notes
    -----
    A partial top-k selection (O(n^2) for all rows) replaces the reference's full argsort
    (O(n^2 log n)). ``x`` is first multiplied by a power of two (``prhlib._checks.unit_scale``,
    exact), so huge or tiny features do not overflow or underflow. Tied similarities are returned in
    an arbitrary order here; the metrics refuse them (the tie rule, ``determined_lists``).
    """
    x = as_matrix(x, "x")
    return nearest(unit_scale(x), check_k(k, x.shape[0]), chunk_rows)


def nearest_many(xs: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """:func:`nearest` of several representations (validated by the caller).

    On a CPU with several threads the searches run side by side, each on one thread, instead of one
    after the other on all threads: two single-threaded ``syrk`` products finish sooner than the same
    two products run in turn on two threads each (measured by ``benchmarks/metrics.py``). The results
    are the same either way.
    """
    workers = min(torch.get_num_threads(), len(xs))
    if workers < 2 or any(x.device.type != "cpu" for x in xs):
        return [nearest(x, k) for x in xs]

    def one(x):
        torch.set_num_threads(1)   # this worker's own intra-op setting
        return nearest(x, k)

    with limited(1), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, xs))


def relabel(knn_b: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    """Neighbour lists of ``b[perm]`` from those of ``b``: row i is ``inv[knn_b[perm[i]]]``."""
    if perm is None:
        return knn_b
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv[knn_b[..., perm, :]]


def tied_rows(x: torch.Tensor, lists: torch.Tensor, k: int, ordered: bool) -> torch.Tensor:
    r"""Rows whose k-neighbour set (``ordered``: ordered list) is not determined by the similarities.

    ``lists`` holds each row's ``k + 1`` most similar rows (``k`` when k = n - 1). The similarities of
    those candidates are recomputed in float64 and two neighbours count as tied when they differ by at
    most :math:`4\sqrt{d}\,\epsilon_{64}\|x_i\|\max_j\|x_j\|` (the rounding of one dot product):
    the set is undetermined when the k-th and (k + 1)-th are tied, the order when any two adjacent
    places among the first k (or the k-th and (k + 1)-th) are. Exact duplicates and constant
    representations are always tied; distinct float32 vectors essentially never are in float64.
    Returns a boolean tensor of shape (n,).
    """
    xd = x.double()
    n, d = xd.shape
    norms = xd.norm(dim=1)
    tol = 4.0 * math.sqrt(d) * torch.finfo(torch.float64).eps * norms * norms.max()
    cols = lists.shape[1]
    out = torch.zeros(n, dtype=torch.bool, device=x.device)
    if cols < 2 or (not ordered and cols == k):
        return out
    step = max(1, CHUNK_ELEMENTS // (cols * d))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        sims = torch.einsum("nd,nkd->nk", xd[rows], xd[lists[rows]])
        gaps = (sims[:, :-1] - sims[:, 1:]).abs()
        if not ordered:
            gaps = gaps[:, k - 1:k]
        out[rows] = (gaps <= tol[rows, None]).any(dim=1)
    return out


class TieAware:
    """Neighbour sets of one representation with its ties resolved in expectation (the tie rule of
    :func:`mutual_knn`).

    ``lists`` (n x k) are the neighbour lists; for the rows in ``rows`` (r,) whose k-th and (k + 1)-th
    neighbours are tied, ``weights`` (r x n, float64) gives each candidate's probability of being a
    neighbour when the tie is broken uniformly at random: 1 above the tie, (k - #above) / #tied inside
    it, 0 below. Every row's weights sum to k.
    """

    def __init__(self, x: torch.Tensor, lists: torch.Tensor, tied: torch.Tensor, k: int):
        self.lists, self.k = lists, k
        self.rows = tied.nonzero().flatten()
        self.tied = tied
        self.weights = membership_weights(x, self.rows, k) if self.rows.numel() else None

    def support(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's candidates and their membership weights, ``(idx, w)``, both n x m: the k
        listed neighbours with weight 1, or for a tied row every candidate with a non-zero weight
        (rows padded with weight 0)."""
        n, k = self.lists.shape
        if self.weights is None:
            return self.lists, torch.ones((n, k), dtype=torch.float64, device=self.lists.device)
        m = max(k, int((self.weights > 0).sum(dim=1).max()))
        idx = torch.zeros((n, m), dtype=torch.long, device=self.lists.device)
        w = torch.zeros((n, m), dtype=torch.float64, device=self.lists.device)
        idx[:, :k], w[:, :k] = self.lists, 1.0
        w[self.rows] = 0.0
        top = self.weights.topk(m, dim=1)          # the non-zero weights come first
        idx[self.rows], w[self.rows] = top.indices, top.values
        return idx, w

    def table(self) -> torch.Tensor:
        """Every membership weight as one n x n matrix (float64 when a row is tied, else bool)."""
        n = self.lists.shape[0]
        if self.weights is None:
            return neighbour_table(self.lists)
        return self.dense(torch.arange(n, device=self.lists.device))

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """Membership weights of ``rows`` (m,) as an m x n float64 matrix."""
        n = self.lists.shape[0]
        out = torch.zeros((rows.numel(), n), dtype=torch.float64, device=self.lists.device)
        out.scatter_(1, self.lists[rows], 1.0)
        if self.weights is not None:
            where = torch.full((n,), -1, dtype=torch.long, device=self.lists.device)
            where[self.rows] = torch.arange(self.rows.numel(), device=self.lists.device)
            hit = where[rows] >= 0
            out[hit] = self.weights[where[rows][hit]]
        return out


def membership_weights(x: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """For each row i in ``rows``: the probability that j is among i's k nearest neighbours when ties
    (within the rounding tolerance of :func:`tied_rows`) are broken uniformly at random. (r x n)"""
    xd = x.double()
    d = xd.shape[1]
    norms = xd.norm(dim=1)
    tol = (4.0 * math.sqrt(d) * torch.finfo(torch.float64).eps * norms[rows] * norms.max())[:, None]
    sims = xd[rows] @ xd.T
    sims[torch.arange(rows.numel(), device=x.device), rows] = -math.inf
    kth = sims.topk(k, dim=1).values[:, -1:]
    above = sims > kth + tol
    tie = (sims - kth).abs() <= tol
    share = (k - above.sum(dim=1, keepdim=True)).double() / tie.sum(dim=1, keepdim=True).double()
    return above.double() + tie.double() * share


def tie_aware_terms(ta: TieAware, tb: TieAware, perm: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mutual k-NN of ``a`` and ``b[perm]`` with ties resolved in expectation:
    :math:`\\frac{1}{k}\\sum_j p^A_{ij}\\, p^{B}_{\\pi(i)\\pi(j)}` (the plain overlap where no tie is involved)."""
    n, k = ta.lists.shape
    terms = overlap_counts(ta.lists, relabel(tb.lists, perm)).double() / k
    b_rows = torch.arange(n, device=ta.lists.device) if perm is None else perm
    affected = (ta.tied | tb.tied[b_rows]).nonzero().flatten()
    if affected.numel():
        pa = ta.dense(affected)
        pb = tb.dense(b_rows[affected])[:, b_rows]
        terms[affected] = (pa * pb).sum(dim=1) / k
    return terms


def tie_aware_scorer(ta: Sequence[TieAware], tb: Sequence[TieAware]):
    r"""``perm -> La x Lb`` mean tie-aware mutual k-NN (:func:`tie_aware_terms`) of every layer pair,
    or ``None`` when B's n x n weight tables would exceed ``8 * CHUNK_ELEMENTS`` bytes.

    For each query i the sum :math:`\sum_j p^A_{ij}\, p^B_{\pi(i)\pi(j)}` runs over A's
    candidates of i only (``TieAware.support``), reading B's weights from a dense table: one gather per
    permutation instead of two n x n products per layer pair.
    """
    n, k = ta[0].lists.shape
    size = sum(n * n * (8 if t.weights is not None else 1) for t in tb)
    if size > 8 * CHUNK_ELEMENTS:
        return None
    tables = [t.table() for t in tb]
    supports = [t.support() for t in ta]
    arange = torch.arange(n, device=ta[0].lists.device)

    def score(perm=None):
        p = arange if perm is None else perm
        out = torch.empty((len(ta), len(tb)), dtype=torch.float64, device=arange.device)
        for i, (idx, w) in enumerate(supports):
            rows, cols = p[:, None], p[idx]
            for j, table in enumerate(tables):
                out[i, j] = (table[rows, cols] * w).sum() / (n * k)
        return out
    return score


def determined_lists(xs: Sequence[torch.Tensor], k: int, metric: str, names: Sequence[str]) -> list:
    """:func:`nearest_many` of (power-of-two rescaled) inputs under the tie rule.

    For ``mutual_knn`` the result is one ``TieAware`` per input (rows whose k-th and (k + 1)-th
    neighbours are tied get expected memberships). The other neighbour metrics return the n x k lists
    after checking that no tie decides the neighbour sets (or, for ``ORDERED_METRICS``, the
    ordered lists).

    Raises
    ------
    ValueError
        (not for mutual_knn) naming the representation and how many rows have tied neighbours at the
        k-th place (or inside the list), so that the score would depend on the order of the rows.
    """
    n = xs[0].shape[0]
    xs = [unit_scale(x) for x in xs]
    extra = 1 if k < n - 1 else 0
    lists = nearest_many(xs, k + extra)
    ordered = metric in ORDERED_METRICS
    if metric == "mutual_knn":
        return [TieAware(x, lst[:, :k], tied_rows(x, lst, k, False), k) for x, lst in zip(xs, lists)]
    for x, lst, name in zip(xs, lists, names):
        bad = int(tied_rows(x, lst, k, ordered).sum())
        if bad:
            where = "inside their ordered list of" if ordered else "at the k-th of their"
            raise ValueError(
                f"{metric} is not determined: {bad} of {n} rows of {name} have tied similarities {where} "
                f"k={k} nearest neighbours (duplicate rows, a constant representation or discrete "
                "features), so the score would depend on the order of the rows. De-duplicate the rows "
                "(np.unique(x, axis=0) with the matching rows of the other representation), change k, "
                "or use mutual_knn (which resolves ties in expectation)")
    return [lst[:, :k] for lst in lists]


def neighbour_table(lists: torch.Tensor) -> torch.Tensor:
    """The n x n boolean table of neighbour lists ``lists`` (n x k): entry (i, j) is True when j is
    among i's listed neighbours."""
    n = lists.shape[0]
    table = torch.zeros((n, n), dtype=torch.bool, device=lists.device)
    table.scatter_(1, lists, True)
    return table


def _edge_lookup(knn_a: torch.Tensor):
    """A function (i, j) -> is j among A's neighbours of i, for index tensors i, j of one shape.

    A dense n x n boolean table when it is small (n^2 <= CHUNK_ELEMENTS bytes; one gather per query),
    else the sorted edge codes i * n + j searched by bisection (O(n k) memory).
    """
    n = knn_a.shape[0]
    rows = torch.arange(n, device=knn_a.device).unsqueeze(1)
    if n * n <= CHUNK_ELEMENTS:
        table = neighbour_table(knn_a)
        return lambda i, j: table[i, j]
    codes = (rows * n + knn_a.sort(dim=1).values).flatten()   # sorted: row offsets i * n dominate

    def lookup(i, j):
        q = (i * n + j).reshape(-1)
        pos = torch.searchsorted(codes, q).clamp_(max=codes.numel() - 1)
        return (codes[pos] == q).reshape(torch.broadcast_shapes(i.shape, j.shape))
    return lookup


def overlap_counts(knn_a: torch.Tensor, knn_b: torch.Tensor) -> torch.Tensor:
    """The overlap size ``len(N_A(i) & N_B(i))`` per row (``knn_b`` may carry leading batch dimensions, e.g. layers)."""
    rows = torch.arange(knn_a.shape[0], device=knn_b.device).unsqueeze(1)
    return _edge_lookup(knn_a)(rows.expand_as(knn_b), knn_b).sum(dim=-1)


def cycle_hits(knn_a: torch.Tensor, knn_b: torch.Tensor) -> torch.Tensor:
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


def lcs_lengths(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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


def levenshtein_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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


#: Per-sample term of each neighbour metric from the two neighbour lists (k = list length).
TERMS = {
    "mutual_knn": lambda ka, kb: overlap_counts(ka, kb).double() / ka.shape[-1],
    "cycle_knn": lambda ka, kb: cycle_hits(ka, kb).double(),
    "lcs_knn": lambda ka, kb: lcs_lengths(ka, kb).double(),
    "edit_distance_knn": lambda ka, kb: 1.0 - levenshtein_distances(ka, kb).double() / ka.shape[-1],
}


def neighbour_terms(metric: str, knn_a: torch.Tensor, knn_b: torch.Tensor) -> torch.Tensor:
    """Per-sample score of a neighbour metric (float64); its mean over samples is the metric."""
    return TERMS[check_choice(metric, "metric", NEIGHBOUR_METRICS)](knn_a, knn_b)


def per_sample_scores(a, b, metric: str = "mutual_knn", k: int = 10) -> np.ndarray:
    """The per-sample terms whose mean is a neighbour metric (e.g. each sample's overlap / k).

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    metric : str
        One of ``NEIGHBOUR_METRICS``.
    k : int

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    if metric not in NEIGHBOUR_METRICS:
        raise ValueError(f"per-sample scores exist for the neighbour metrics {NEIGHBOUR_METRICS}, "
                         f"not {metric!r}")
    ta, tb = as_pair(a, b)
    k = check_k(k, ta.shape[0])
    lists = determined_lists([ta, tb], k, metric, ("a", "b"))
    if metric == "mutual_knn":
        return tie_aware_terms(*lists).cpu().numpy()
    return neighbour_terms(metric, *lists).cpu().numpy()


def _score(metric: str, a, b, k: int) -> float:
    return float(per_sample_scores(a, b, metric, k).mean())


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

    Tie rule: when a row's k-th and (k + 1)-th most similar rows have equal dot products (duplicate
    rows, a constant representation, discrete features) its neighbour set is not determined, and
    breaking the tie by position would make the score depend on the order of the rows. Mutual k-NN
    (with its calibration and layer search) therefore counts each tied candidate with its probability
    of being a neighbour when the tie is broken uniformly at random (``TieAware``): the expected
    score, independent of row order, equal to the plain score when nothing is tied. The other
    neighbour metrics raise a ``ValueError`` saying how many rows are affected
    (``determined_lists``); the ordered ones (:func:`lcs_knn`, :func:`edit_distance_knn`) also
    refuse ties inside the list. Each input is
    first scaled by a power of two (exact; the metric is invariant to it) so that features near the
    float range's ends do not overflow.
    """
    return _score("mutual_knn", a, b, k)


def cycle_knn(a, b, k: int = 10) -> float:
    """Cycle k-NN: the fraction of samples i found among the A-neighbours of i's B-neighbours.

    Go from i to its k nearest neighbours in ``b``, then to each of their k nearest neighbours in
    ``a``: the score is the fraction of samples that come back to themselves. Not symmetric.

    Parameters are those of :func:`mutual_knn`.

    Returns
    -------
    float
        In [0, 1]. Unrelated representations score about :math:`1 - (1 - k/(n-1))^k`.
    """
    return _score("cycle_knn", a, b, k)


def lcs_knn(a, b, k: int = 10) -> float:
    """Mean length of the longest common subsequence of the two ordered neighbour lists.

    As in the official code the length is *not* divided by k, so the score lies in [0, k].

    Parameters are those of :func:`mutual_knn`.

    Returns
    -------
    float
        In [0, k]; k when both lists are identical and identically ordered.
    """
    return _score("lcs_knn", a, b, k)


def edit_distance_knn(a, b, k: int = 10) -> float:
    """One minus the mean Levenshtein distance between the ordered neighbour lists, divided by k.

    Parameters are those of :func:`mutual_knn`.

    Returns
    -------
    float
        In [0, 1]; 1 when both ordered lists are identical. Order matters: the same set in another
        order scores less than 1.
    """
    return _score("edit_distance_knn", a, b, k)


def neighbour_scorer(metric: str, A: list[torch.Tensor], B: list[torch.Tensor], k):
    """``perm -> La x Lb`` scores of a neighbour metric; each layer's lists are computed once and a
    permutation of B's rows only relabels them."""
    k = check_k(k, A[0].shape[0])
    names = [f"layers_a[{i}]" for i in range(len(A))] + [f"layers_b[{j}]" for j in range(len(B))]
    lists = determined_lists(list(A) + list(B), k, metric, names)
    if metric == "mutual_knn":
        if any(t.rows.numel() for t in lists):   # ties: each layer pair resolves them in expectation
            ta, tb = lists[:len(A)], lists[len(A):]
            fast = tie_aware_scorer(ta, tb)
            if fast is not None:
                return fast
            return lambda perm=None: torch.stack([torch.stack([tie_aware_terms(a, b, perm).mean()
                                                               for b in tb]) for a in ta])
        lists = [t.lists for t in lists]
    ka, kb = lists[:len(A)], torch.stack(lists[len(A):])        # kb: (Lb, n, k)

    def score(perm=None):
        kbp = relabel(kb, perm)
        return torch.stack([neighbour_terms(metric, ka_i, kbp).mean(dim=-1) for ka_i in ka])
    return score
