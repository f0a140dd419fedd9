r"""Geometry metrics: subspaces (SVCCA), distance structure (RSA), rotations (Procrustes), prediction.

``svcca``                                        canonical correlations of the top singular subspaces
``rsa``, ``rsa_from_distances``, ``rsa_test``     rank correlation of dissimilarity matrices (+ Mantel test)
``procrustes_similarity``, ``procrustes_distance``, ``procrustes_rotation``
``linear_predictivity``                           cross-validated ridge R^2 (asymmetric)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .._checks import (as_pair, check_bool, check_choice, check_int, check_memory, check_seed, to_tensor,
                       require_finite, unit_scale)
from .kernels import squared_distances

RANK_METHODS = ("spearman", "kendall")
DISTANCES = ("euclidean", "cosine", "correlation")


# ------------------------------------------------------------------------------------------------
# SVCCA
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


def drop_zero_columns(x: torch.Tensor) -> torch.Tensor:
    """``x`` without its all-zero columns (the zero padding of narrower layers in ``features.extract``)."""
    keep = (x != 0).any(dim=0)
    return x if bool(keep.all()) else x[:, keep]


def svcca(a, b, dim: int = 10) -> float:
    """Singular vector canonical correlation analysis (Raghu et al. 2017), as in the official code.

    Drop all-zero columns, z-score every feature, keep the top ``dim`` left singular vectors of each
    side, and average the ``dim`` canonical correlations between the two subspaces.

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    dim : int
        Singular directions kept per side; at most min(d_a', d_b', n - 1) where d' counts the columns
        that are not all zero.

    Returns
    -------
    float
        In [0, 1]; 1 when the top-``dim`` subspaces coincide.

    Notes
    -----
    All-zero columns carry no information and cannot be z-scored: they are dropped first. This is
    what makes ``best_layer_pair(..., metric="svcca")`` work on ``features.extract``'s layers, which
    are zero-padded to the widest layer. Other constant columns still raise (they are a property of
    the data, not of the padding).

    Both bases are orthonormal and centred, so the canonical correlations are exactly the singular
    values of :math:`U_A^\\top U_B` (the cosines of the principal angles). This is deterministic; the
    official code uses a randomised SVD, sklearn's iterative CCA and added noise, so it varies run to
    run by about 1e-3.
    """
    A, B = as_pair(a, b)
    A, B = unit_scale(drop_zero_columns(A)), unit_scale(drop_zero_columns(B))
    n = A.shape[0]
    dim = check_int(dim, "dim", minimum=1)
    if dim > min(A.shape[1], B.shape[1], n - 1):
        raise ValueError(f"dim={dim} exceeds min(d_a, d_b, n - 1) = {min(A.shape[1], B.shape[1], n - 1)} "
                         "(columns that are not all zero)")
    Ua = _top_left_singular(_zscore(A, "a"), dim, "a")
    Ub = _top_left_singular(_zscore(B, "b"), dim, "b")
    rho = torch.linalg.svdvals(Ua.T @ Ub).clamp(max=1.0)
    return float(rho.mean())


# ------------------------------------------------------------------------------------------------
# RSA
# ------------------------------------------------------------------------------------------------
def distance_vector(X: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """The n(n-1)/2 pairwise dissimilarities of the rows of ``X`` (upper triangle, row-major)."""
    X = X.double()
    check_choice(distance, "distance", DISTANCES)
    if distance == "euclidean":
        D = squared_distances(X).sqrt()
    else:
        if distance == "correlation":
            X = X - X.mean(dim=1, keepdim=True)
        norms = X.norm(dim=1)
        zero = (norms == 0).nonzero().flatten().tolist()
        if zero:
            raise ValueError(f"{distance} distance is undefined for rows {zero[:10]} (zero norm"
                             f"{' after centring' if distance == 'correlation' else ''})")
        Xn = X / norms[:, None]
        D = 1.0 - Xn @ Xn.T
    iu = torch.triu_indices(X.shape[0], X.shape[0], offset=1, device=X.device)
    return D[iu[0], iu[1]]


def average_ranks(v: torch.Tensor) -> torch.Tensor:
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


def _rank_correlation_of(da: torch.Tensor, db: torch.Tensor, method: str) -> float:
    for name, d in (("a", da), ("b", db)):
        if bool(d.max() == d.min()):
            raise ValueError(f"all pairwise distances of {name} are equal: a rank correlation is undefined")
    if method == "spearman":
        return _pearson(average_ranks(da), average_ranks(db))
    from scipy import stats

    return float(stats.kendalltau(da.cpu().numpy(), db.cpu().numpy()).statistic)


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
    the CPU with SciPy. :func:`rsa_from_distances` takes precomputed dissimilarity matrices.
    Each input is first scaled by a power of two (exact; ranks of distances are invariant to it), so
    huge or tiny features do not overflow. About eight n x n float64 matrices at the peak, checked
    against the available memory first (a ``ValueError`` gives the largest n that fits).
    """
    A, B = as_pair(a, b)
    check_choice(method, "method", RANK_METHODS)
    if A.shape[0] < 3:
        raise ValueError("RSA needs n >= 3 samples (at least 3 pairwise distances)")
    check_memory("RSA", A.shape[0], 8, A.device)
    A, B = unit_scale(A), unit_scale(B)
    return _rank_correlation_of(distance_vector(A, distance), distance_vector(B, distance), method)


def as_dissimilarity(d, name: str) -> torch.Tensor:
    """A validated square, symmetric, finite dissimilarity matrix (n >= 3) as a float64 tensor."""
    t = to_tensor(d, name).double()
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 3:
        raise ValueError(f"{name} must be a square n x n dissimilarity matrix with n >= 3, got shape "
                         f"{tuple(t.shape)}")
    require_finite(t, name)
    if not torch.allclose(t, t.T):
        raise ValueError(f"{name} is not symmetric: a dissimilarity matrix must satisfy d[i, j] == d[j, i]")
    return t


def _upper(t: torch.Tensor) -> torch.Tensor:
    iu = torch.triu_indices(t.shape[0], t.shape[0], offset=1, device=t.device)
    return t[iu[0], iu[1]]


def rsa_from_distances(d_a, d_b, method: str = "spearman") -> float:
    """:func:`rsa` from two precomputed n x n dissimilarity matrices over the same items.

    The score is the rank correlation of the n(n-1)/2 entries above the diagonal; any monotone
    transform of either matrix (a similarity instead of a distance reverses the sign) leaves its
    magnitude unchanged.
    """
    da, db = as_dissimilarity(d_a, "d_a"), as_dissimilarity(d_b, "d_b")
    if da.shape != db.shape:
        raise ValueError(f"d_a and d_b cover different numbers of items: {tuple(da.shape)} vs {tuple(db.shape)}")
    return _rank_correlation_of(_upper(da), _upper(db), check_choice(method, "method", RANK_METHODS))


@dataclass
class RSAResult:
    """Rank correlation of two dissimilarity matrices with its relabelling (Mantel) null.

    ``score``: the observed correlation; ``null``: the correlations after relabelling the items of
    the second matrix (K permutations); ``threshold``: :func:`permutation_threshold` of the null with
    the observed value pooled; ``p_value``: :func:`permutation_p_value`.
    """

    score: float
    p_value: float
    threshold: float
    null: np.ndarray = field(repr=False)
    method: str = "spearman"
    n: int = 0

    @property
    def null_mean(self) -> float:
        return float(self.null.mean())


def rsa_test(d_a, d_b, method: str = "spearman", permutations: int = 1000, alpha: float = 0.05,
             seed: int = 0) -> RSAResult:
    """RSA between two n x n dissimilarity matrices with a Mantel permutation test.

    The null relabels the items of ``d_b``: one permutation ``pi`` reorders rows and columns together
    (``d_b[pi][:, pi]``), keeping ``d_b``'s own structure and breaking only its correspondence with
    ``d_a``. p-value and threshold follow the exact rule of :func:`prhlib.metrics.calibrate`.

    Parameters
    ----------
    d_a, d_b : array-like, shape (n, n)
        Symmetric dissimilarities, n >= 3.
    method : {"spearman", "kendall"}
    permutations : int
    alpha : float
    seed : int

    Returns
    -------
    RSAResult
    """
    from .inference import permutation_p_value, permutation_threshold

    da, db = as_dissimilarity(d_a, "d_a"), as_dissimilarity(d_b, "d_b")
    if da.shape != db.shape:
        raise ValueError(f"d_a and d_b cover different numbers of items: {tuple(da.shape)} vs {tuple(db.shape)}")
    method = check_choice(method, "method", RANK_METHODS)
    permutations = check_int(permutations, "permutations", minimum=1)
    rng = np.random.default_rng(check_seed(seed))
    n = da.shape[0]
    ua = _upper(da)
    for name, u in (("d_a", ua), ("d_b", _upper(db))):
        if bool(u.max() == u.min()):
            raise ValueError(f"{name} is constant off the diagonal: a rank correlation is undefined")
    if method == "spearman":
        # Relabelling the items only permutes d_b's upper-triangle entries: rank once, then each
        # permutation is a gather and a dot product.
        ra = average_ranks(ua)
        ra = (ra - ra.mean()) / (ra - ra.mean()).norm()
        rb = torch.zeros_like(db)
        iu = torch.triu_indices(n, n, offset=1)
        rb[iu[0], iu[1]] = average_ranks(_upper(db))
        rb = rb + rb.T
        centred = _upper(rb) - _upper(rb).mean()
        norm = centred.norm()

        def corr(p):
            return float(((rb[p][:, p][iu[0], iu[1]] - _upper(rb).mean()) @ ra) / norm)
    else:
        def corr(p):
            return _rank_correlation_of(ua, _upper(db[p][:, p]), "kendall")
    score = corr(torch.arange(n))
    null = np.array([corr(torch.from_numpy(rng.permutation(n))) for _ in range(permutations)])
    return RSAResult(score=score, p_value=permutation_p_value(score, null),
                     threshold=permutation_threshold(null, alpha, observed=score), null=null,
                     method=method, n=n)


# ------------------------------------------------------------------------------------------------
# Procrustes
# ------------------------------------------------------------------------------------------------
def _unit_shapes(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column-centred features scaled to unit Frobenius norm (float64), zero-padded to one width."""
    out = []
    for name, X in (("a", A), ("b", B)):
        X = unit_scale(X).double()     # exact power-of-two rescaling: no overflow near 1e300
        X = X - X.mean(0)
        norm = X.norm()
        if float(norm) == 0:
            raise ValueError(f"{name} has no variance across samples (all rows identical): Procrustes "
                             "alignment divides by its Frobenius norm")
        out.append(X / norm)
    return out[0], out[1]


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
    A, B = _unit_shapes(*as_pair(a, b))
    return float(torch.linalg.matrix_norm(A.T @ B, ord="nuc").clamp(max=1.0))


def procrustes_rotation(a, b) -> np.ndarray:
    r"""The orthogonal map :math:`Q = \arg\min_{Q^\top Q = I} \|\tilde A Q - \tilde B\|_F` (d_a x d_b).

    With :math:`\tilde A^\top \tilde B = U S V^\top`, :math:`Q = U V^\top` (Schönemann 1966); applied to
    the centred, unit-norm ``a`` it gives the best rotated copy of ``b``.

    Returns
    -------
    numpy.ndarray, shape (d_a, d_b)
    """
    A, B = _unit_shapes(*as_pair(a, b))
    U, _, Vh = torch.linalg.svd(A.T @ B, full_matrices=False)
    return (U @ Vh).cpu().numpy()


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
    if check_bool(angular, "angular"):
        return float(math.acos(nuc))
    return float(math.sqrt(max(2.0 - 2.0 * nuc, 0.0)))


# ------------------------------------------------------------------------------------------------
# linear predictivity
# ------------------------------------------------------------------------------------------------
def ridge_fit_loo(X: torch.Tensor, Y: torch.Tensor, alphas: torch.Tensor):
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
    A, B = as_pair(a, b)
    n = A.shape[0]
    folds = check_int(folds, "folds", minimum=2, maximum=n)
    alphas_t = to_tensor(alphas, "alphas").double().flatten().to(A.device)
    if alphas_t.numel() == 0 or not bool((alphas_t > 0).all() and torch.isfinite(alphas_t).all()):
        raise ValueError(f"alphas must be positive ridge penalties, got {list(alphas)}")
    X, Y = A.double(), B.double()
    sst = (Y - Y.mean(0)).square().sum()
    if not (bool(torch.isfinite(sst)) and bool(torch.isfinite(X.square().sum()))):
        raise ValueError("the features are too large for ridge regression in float64 (squares overflow, "
                         "values near 1e150 or larger): divide a and b by a common factor first (R^2 "
                         "does not change when b is rescaled; the penalties alphas scale with a^2)")
    if float(sst) == 0:
        raise ValueError("b has no variance across samples: R^2 divides by it")
    order = torch.from_numpy(np.random.default_rng(check_seed(seed)).permutation(n)).to(A.device)
    pred = torch.empty_like(Y)
    for test in torch.tensor_split(order, folds):
        train = torch.ones(n, dtype=torch.bool, device=A.device)
        train[test] = False
        W, c, _ = ridge_fit_loo(X[train], Y[train], alphas_t)
        pred[test] = X[test] @ W + c
    return float(1.0 - (Y - pred).square().sum() / sst)


def rsa_scorer(A, B, distance: str = "euclidean"):
    """``perm -> La x Lb`` Spearman RSA scores: permuting B's rows permutes its distance matrix, hence
    its matrix of ranks, so each layer is ranked once."""
    n, device = A[0].shape[0], A[0].device
    A, B = [unit_scale(x) for x in A], [unit_scale(y) for y in B]
    iu = torch.triu_indices(n, n, offset=1, device=device)

    def centred_rank_matrix(x, name):
        d = distance_vector(x, distance)
        if bool(d.max() == d.min()):
            raise ValueError(f"all pairwise distances of {name} are equal: a rank correlation is undefined")
        r = average_ranks(d)
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
