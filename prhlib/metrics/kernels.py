r"""Kernel metrics in the style of Kornblith et al. (2019): small pure functions, formula visible.

``gram_linear``, ``gram_rbf``, ``gram``    n x n kernel matrices
``center``                                 H K H with H = I - 11^T / n
``hsic_biased``, ``hsic_unbiased``         HSIC estimators of two kernels (tensors in, tensor out)
``hsic``                                   the validated public version (float out)
``cka``, ``unbiased_cka``, ``cknna``       the metrics

The unbiased estimator (Song et al. 2012) is written once, in ``unbiased_hsic_from_sums``, from
four sums; the matrix, feature-space and layer-stack computations all call it.
"""

from __future__ import annotations

import math

import torch

from .._checks import as_pair, check_bool, check_choice, check_float, check_k, check_memory, unit_scale

#: Largest total size (bytes) of the per-layer Gram matrices cached by the layer functions.
GRAM_CACHE_BYTES = 2**30


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """K = X X^T, shape (n, n), float64."""
    x = x.double()
    return x @ x.T


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """||x_i - x_j||^2, shape (n, n), >= 0 with a zero diagonal."""
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


def gram_rbf(x: torch.Tensor, sigma: float | str = 1.0, median_scale: float = 1.0) -> torch.Tensor:
    r"""K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)), shape (n, n), float64.

    ``sigma="median"``: ``median_scale`` times the square root of the median squared distance over
    the full n x n matrix, diagonal included (Kornblith et al.'s convention).
    """
    d2 = squared_distances(x.double())
    if not bool(torch.isfinite(d2).all()):
        raise ValueError("squared distances overflow float64 (features near 1e150 or larger): the RBF "
                         "kernel with a fixed sigma depends on the scale; divide the features by a "
                         "common factor (and sigma by the same) or use sigma='median'")
    if isinstance(sigma, str):
        check_choice(sigma, "sigma", ("median",))
        scale = check_float(median_scale, "median_scale", low=0, low_inclusive=False)
        med = _median(d2.flatten())
        if float(med) <= 0:
            raise ValueError("the median squared distance is 0 (most rows are identical): the median "
                             "heuristic cannot choose an RBF bandwidth; pass sigma explicitly")
        s2 = scale ** 2 * med
    else:
        s2 = check_float(sigma, "sigma", low=0, low_inclusive=False) ** 2
    return torch.exp(-d2 / (2.0 * s2))


def gram(x: torch.Tensor, kernel: str = "linear", sigma: float | str = 1.0,
         median_scale: float = 1.0) -> torch.Tensor:
    """The kernel matrix of ``x`` by name (``"linear"`` or ``"rbf"``)."""
    if check_choice(kernel, "kernel", ("linear", "rbf")) == "linear":
        return gram_linear(x)
    return gram_rbf(x, sigma, median_scale)


def center(K: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T/n, without forming H."""
    return K - K.mean(dim=0, keepdim=True) - K.mean(dim=1, keepdim=True) + K.mean()


def hsic_biased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """trace(K H L H) = sum((HKH) * L^T); valid for non-symmetric K, L (as CKNNA's masked kernels).
    Not divided by (n-1)^2, as in the official code (CKA's ratio cancels the scale)."""
    return (center(K) * L.T).sum()


def unbiased_hsic_from_sums(trace, sum_k, sum_l, cross, n: int):
    r"""Song et al. (2012) unbiased HSIC from four sums of the zero-diagonal kernels :math:`\tilde K, \tilde L`.

    .. math:: \frac{1}{n(n-3)}\Big[\underbrace{\textstyle\sum_{ij}\tilde K_{ij}\tilde L_{ji}}_{trace}
              + \frac{\overbrace{\mathbf 1^\top\tilde K\mathbf 1}^{sum\_k}\,
                      \overbrace{\mathbf 1^\top\tilde L\mathbf 1}^{sum\_l}}{(n-1)(n-2)}
              - \frac{2}{n-2}\underbrace{\mathbf 1^\top\tilde K\tilde L\mathbf 1}_{cross}\Big]

    Works elementwise on tensors (a whole grid of layer pairs at once).
    """
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC of two n x n kernels (n >= 4), in the official code's form (valid for
    non-symmetric K, L): diagonals set to 0, then ``unbiased_hsic_from_sums``."""
    Kt, Lt = K.clone(), L.clone()
    Kt.fill_diagonal_(0)
    Lt.fill_diagonal_(0)
    cross = Kt.sum(dim=0) @ Lt.sum(dim=1)  # = sum(Kt @ Lt) without the O(n^3) product
    return unbiased_hsic_from_sums((Kt * Lt.T).sum(), Kt.sum(), Lt.sum(), cross, K.shape[0])


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
    Kt, Lt = as_pair(K, L, ("K", "L"))
    n = Kt.shape[0]
    if Kt.shape != (n, n) or Lt.shape != (n, n):
        raise ValueError(f"K and L must be square n x n kernels, got {tuple(Kt.shape)} and {tuple(Lt.shape)}")
    if check_bool(unbiased, "unbiased") and n < 4:
        raise ValueError(f"unbiased HSIC needs n >= 4 samples (it divides by n(n-3)), got n={n}")
    Kt, Lt = Kt.double(), Lt.double()
    return float(hsic_unbiased(Kt, Lt) if unbiased else hsic_biased(Kt, Lt))


#: HSIC(K, K) at most this fraction of ||K||_F^2 is rounding left by cancellation: no variance.
CANCELLATION = 1e-12


def cka_ratio(kl, kk, ll, what: str, scale_k=0.0, scale_l=0.0) -> float:
    """HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), with an error (no epsilon) when a side has no variance.

    ``scale_k``, ``scale_l``: ||K||_F^2, ||L||_F^2 of the uncentred kernels, for estimators that
    cancel large terms (the unbiased one): HSIC(K, K) <= :data:`CANCELLATION` * scale is rounding
    (a constant representation gives 1e-9 instead of 0, and would score 1.0)."""
    kk, ll = float(kk), float(ll)
    if kk <= CANCELLATION * float(scale_k) or ll <= CANCELLATION * float(scale_l):
        kk, ll = (0.0 if kk <= CANCELLATION * float(scale_k) else kk), (0.0 if ll <= CANCELLATION * float(scale_l) else ll)
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
        return cka_ratio(kl, kk, ll, "CKA")

    def parts(X):
        diag = (X * X).sum(1)                      # K_ii
        col = X.sum(0)                             # X^T 1
        return diag, col @ col - diag.sum(), X @ col - diag   # K_ii, 1^T K~ 1, K~ 1

    def u(X, Y, px, py):
        trace = (X.T @ Y).square().sum() - (px[0] * py[0]).sum()
        return unbiased_hsic_from_sums(trace, px[1], py[1], px[2] @ py[2], n)

    pa, pb = parts(A), parts(B)
    return cka_ratio(u(A, B, pa, pb), u(A, A, pa, pa), u(B, B, pb, pb), "unbiased CKA",
                     (A.T @ A).square().sum(), (B.T @ B).square().sum())


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
        RBF bandwidth (:func:`gram_rbf`).
    unbiased : bool
        Use the unbiased HSIC of Song et al. (2012) (needs n >= 4). The biased estimator is inflated
        when d is large compared with n (:func:`chance`).
    median_scale : float
        Only for ``sigma="median"``; positive.

    Returns
    -------
    float
        Biased: in [0, 1]. Unbiased: at most 1, can be slightly negative; about 0 for unrelated data.

    Notes
    -----
    Linear CKA is computed from the features (O(n d_a d_b)) or from the n x n Gram matrices,
    whichever is cheaper; both give the same number. Computed in float64, no epsilon. Linear CKA and
    RBF CKA with ``sigma="median"`` are invariant to scaling either input, which is first multiplied
    by a power of two (exact) so that features near 1e300 do not overflow. RBF CKA with a fixed sigma
    raises when the squared distances overflow. The Gram route needs about six n x n float64
    matrices; a ``ValueError`` gives that estimate and the largest n that fits before allocating.
    """
    A, B = as_pair(a, b)
    n = A.shape[0]
    check_choice(kernel, "kernel", ("linear", "rbf"))
    if check_bool(unbiased, "unbiased") and n < 4:
        raise ValueError(f"unbiased CKA needs n >= 4 samples (it divides by n(n-3)), got n={n}")
    if kernel == "linear" or isinstance(sigma, str):   # scale-invariant: exact power-of-two rescaling
        A, B = unit_scale(A), unit_scale(B)
    if kernel == "linear":
        da, db = A.shape[1], B.shape[1]
        if n * (da * db + da * da + db * db) <= n * n * (da + db + 3):
            return _linear_cka_features(A, B, unbiased)
    check_memory(f"{kernel} CKA", n, 6, A.device)
    K = gram(A, kernel, sigma, median_scale)
    L = gram(B, kernel, sigma, median_scale)
    f = hsic_unbiased if unbiased else hsic_biased
    scales = ((K * K).sum(), (L * L).sum()) if unbiased else (0.0, 0.0)
    return cka_ratio(f(K, L), f(K, K), f(L, L), "unbiased CKA" if unbiased else "CKA", *scales)


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


def cknna_mask(G: torch.Tensor, k: int, unbiased: bool, name: str = "a") -> torch.Tensor:
    """0/1 matrix marking each row's top-k entries of a kernel (diagonal excluded when unbiased).

    Raises a ``ValueError`` when a row's k-th and (k + 1)-th entries are tied (within the rounding of
    one entry), so that the mask would depend on the order of the rows (the tie rule of the
    neighbour metrics, :func:`prhlib.metrics.neighbours.determined_lists`).
    """
    Gh = G.clone()
    if unbiased:
        Gh.fill_diagonal_(-math.inf)
    n = G.shape[0]
    top = torch.topk(Gh, min(k + 1, n), dim=1)
    if top.values.shape[1] > k and bool(torch.isfinite(top.values[:, k]).any()):
        scale = G.diagonal().abs().max()
        tol = 4.0 * math.sqrt(n) * torch.finfo(torch.float64).eps * scale
        bad = int(((top.values[:, k - 1] - top.values[:, k]).abs() <= tol).sum())
        if bad:
            raise ValueError(f"CKNNA is not determined: {bad} of {n} rows of {name} have tied kernel values "
                             f"at their k-th of k={k} neighbours (duplicate rows, a constant representation "
                             "or discrete features), so the mask would depend on the order of the rows; "
                             "de-duplicate the rows or change k")
    return torch.zeros_like(G).scatter_(1, top.indices[:, :k], 1.0)


def masked_hsic(K, L, mK, mL, unbiased: bool) -> torch.Tensor:
    """HSIC of the kernels restricted to the pairs that are top-k in both (mask mK * mL)."""
    mask = mK * mL
    return (hsic_unbiased if unbiased else hsic_biased)(mask * K, mask * L)


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
    O(n^2) memory (dense masks; the metric needs the masked kernels): about ten n x n float64
    matrices, checked against the available memory before allocating (a ``ValueError`` gives the
    estimate and the largest n that fits). Ties at the k-th kernel value raise (``cknna_mask``).
    Each input is first scaled by a power of two (exact; CKNNA is invariant to it).
    """
    A, B = as_pair(a, b)
    n = A.shape[0]
    if n < 4:
        raise ValueError(f"CKNNA needs n >= 4 samples (unbiased HSIC divides by n(n-3)), got n={n}")
    k = n - 1 if k is None else check_k(k, n, minimum=2)
    unbiased = check_bool(unbiased, "unbiased")
    check_memory("CKNNA", n, 10, A.device)
    K, L = gram_linear(unit_scale(A)), gram_linear(unit_scale(B))
    mK, mL = cknna_mask(K, k, unbiased, "a"), cknna_mask(L, k, unbiased, "b")
    return cka_ratio(masked_hsic(K, L, mK, mL, unbiased), masked_hsic(K, K, mK, mK, unbiased),
                     masked_hsic(L, L, mL, mL, unbiased), "CKNNA")


# ------------------------------------------------------------------------------------------------
# layer stacks: each layer's kernel once, every (layer, layer, permutation) from it
# ------------------------------------------------------------------------------------------------
def fits_in_cache(n: int, n_layers: int) -> bool:
    """Whether ``n_layers`` float64 n x n matrices fit in ``GRAM_CACHE_BYTES``."""
    return n_layers * n * n * 8 <= GRAM_CACHE_BYTES


def cka_scorer(A, B, unbiased: bool = False, kernel: str = "linear", sigma=1.0, median_scale: float = 1.0):
    """``perm -> La x Lb`` CKA scores from each layer's kernel, computed once; a permutation of B's
    rows only reindexes its kernels (HSIC(K, L) is one dot product of flattened kernels)."""
    n, Lb = A[0].shape[0], len(B)
    if unbiased and n < 4:
        raise ValueError(f"unbiased CKA needs n >= 4 samples, got n={n}")
    if kernel == "linear" or isinstance(sigma, str):
        A, B = [unit_scale(x) for x in A], [unit_scale(y) for y in B]
    Ks = [gram(x, kernel, sigma, median_scale) for x in A]
    Ls = [gram(y, kernel, sigma, median_scale) for y in B]
    if unbiased:
        for G in Ks + Ls:
            G.fill_diagonal_(0)
        Kf, Lf = torch.stack([K.flatten() for K in Ks]), torch.stack([L.flatten() for L in Ls])
        Ksum, Lsum = Kf.sum(1), Lf.sum(1)
        Krow, Lrow = torch.stack([K.sum(1) for K in Ks]), torch.stack([L.sum(1) for L in Ls])
        kk = unbiased_hsic_from_sums((Kf * Kf).sum(1), Ksum, Ksum, (Krow * Krow).sum(1), n)
        ll = unbiased_hsic_from_sums((Lf * Lf).sum(1), Lsum, Lsum, (Lrow * Lrow).sum(1), n)
        kk = torch.where(kk <= CANCELLATION * (Kf * Kf).sum(1), torch.zeros_like(kk), kk)
        ll = torch.where(ll <= CANCELLATION * (Lf * Lf).sum(1), torch.zeros_like(ll), ll)
    else:
        Kf = torch.stack([center(K).flatten() for K in Ks])
        Lf = torch.stack([center(L).flatten() for L in Ls])
        kk, ll = (Kf * Kf).sum(1), (Lf * Lf).sum(1)
    del Ks, Ls
    for name, v in (("a", kk), ("b", ll)):
        bad = (v <= 0).nonzero().flatten().tolist()
        if bad:
            raise ValueError(f"CKA is undefined: layers {bad} of {name} have HSIC <= 0 (no variance)")
    denom = torch.sqrt(kk[:, None] * ll[None, :])

    def score(perm=None):
        Lp = Lf if perm is None else Lf.view(Lb, n, n)[:, perm][:, :, perm].reshape(Lb, n * n)
        kl = Kf @ Lp.T
        if unbiased:
            Lrow_p = Lrow if perm is None else Lrow[:, perm]
            kl = unbiased_hsic_from_sums(kl, Ksum[:, None], Lsum[None, :], Krow @ Lrow_p.T, n)
        return kl / denom
    return score


def cknna_scorer(A, B, k, unbiased: bool = True):
    """``perm -> La x Lb`` CKNNA scores; kernels and top-k masks computed once per layer (the top-k
    mask of a permuted kernel is the permuted mask)."""
    n = A[0].shape[0]
    if n < 4:
        raise ValueError(f"CKNNA needs n >= 4 samples, got n={n}")
    kn = n - 1 if k is None else check_k(k, n, minimum=2)
    Ks, Ls = [gram_linear(unit_scale(x)) for x in A], [gram_linear(unit_scale(y)) for y in B]
    mKs = [cknna_mask(K, kn, unbiased, f"layers_a[{i}]") for i, K in enumerate(Ks)]
    mLs = [cknna_mask(L, kn, unbiased, f"layers_b[{j}]") for j, L in enumerate(Ls)]
    kk = [float(masked_hsic(K, K, m, m, unbiased)) for K, m in zip(Ks, mKs)]
    ll = [float(masked_hsic(L, L, m, m, unbiased)) for L, m in zip(Ls, mLs)]

    def score(perm=None):
        out = torch.empty((len(Ks), len(Ls)), dtype=torch.float64, device=A[0].device)
        for j, (L, mL) in enumerate(zip(Ls, mLs)):
            if perm is not None:
                L, mL = L[perm][:, perm], mL[perm][:, perm]
            for i, (K, mK) in enumerate(zip(Ks, mKs)):
                out[i, j] = cka_ratio(masked_hsic(K, L, mK, mL, unbiased), kk[i], ll[j], "CKNNA")
        return out
    return score
