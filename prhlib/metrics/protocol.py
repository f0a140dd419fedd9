"""The paper's protocol: prepare the features, score every layer pair, keep the best.

The path from two layered tensors to the paper's score is short::

    best_layer_pair(layers_a, layers_b, metric)
      -> layer_scores: prepared_layers (validate, clamp, l2-normalise; + the concatenation)
                       -> registry.layer_scorer(metric, A, B, k, options)(None)   # La x Lb scores
      -> arg-max, floored at 0
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import as_layers, as_matrix, check_bool, check_clamp, check_float, to_tensor
from .registry import layer_scorer, metric_function


def measure(a, b, metric: str = "mutual_knn", k: int | None = 10, **options) -> float:
    """Any metric by name (``"procrustes"`` means :func:`procrustes_similarity`, higher = more aligned).

    Parameters
    ----------
    a, b : array-like or torch.Tensor, shapes (n, d_a) and (n, d_b)
    metric : str
        One of ``METRICS``.
    k : int or None
        Neighbours, for the neighbour metrics and :func:`cknna`; ignored by the others.
    **options
        The metric's own options (e.g. ``kernel="rbf"`` for ``"cka"``, ``method="kendall"`` for
        ``"rsa"``); an option the metric does not have raises ``ValueError``.

    Returns
    -------
    float
    """
    return metric_function(metric, k, options, where="measure")(a, b)


def clamp_threshold(mats: list[torch.Tensor], q: float, clamp: str = "exact") -> torch.Tensor:
    """The clamp threshold of :func:`prepare` for the layers ``mats`` (each n x d_l), all layers
    together.

    ``clamp="exact"``: the official ``--precise`` rule ``sorted(|x|)[int(q * numel)]`` over every
    value, by selection (O(numel)) instead of a full sort. ``clamp="per_sample"``: the official
    default, ``per_sample_threshold``.
    """
    if check_clamp(clamp) == "per_sample":
        return per_sample_threshold(mats, q)
    numel = sum(m.numel() for m in mats)
    index = min(int(q * numel), numel - 1)
    if mats[0].device.type == "cpu":
        flat = np.concatenate([np.abs(m.numpy()).ravel() for m in mats])
        return torch.tensor(np.partition(flat, index)[index])
    flat = torch.cat([m.abs().flatten() for m in mats])
    return torch.kthvalue(flat, index + 1).values


def per_sample_threshold(mats: list[torch.Tensor], q: float) -> torch.Tensor:
    """The official clamp threshold without ``--precise``: for each sample (row) the ``q``-quantile
    of |x| over all its values (every layer's), with linear interpolation between order
    statistics as ``torch.quantile``; then the mean of these n quantiles.

    By selection (O(numel)) instead of a sort, in the input's precision. The interpolation weight is
    computed as torch 2.x computes it (``q`` rounded to the input's dtype, the rank
    ``q * (m - 1)`` in double), so the result equals ``torch.quantile(|x|.flatten(1), q,
    dim=1).mean()`` bit for bit on the installed torch (tested), with no limit on the row length.
    """
    rows = torch.cat([m.abs() for m in mats], dim=1) if len(mats) > 1 else mats[0].abs()
    rank = float(torch.tensor(q, dtype=rows.dtype)) * (rows.shape[1] - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    weight = torch.tensor(rank - lo, dtype=rows.dtype, device=rows.device)
    below, above = _row_order_statistics(rows, lo, hi, rows.device.type == "cpu")
    return torch.lerp(below, above, weight).mean()


def _row_order_statistics(rows: torch.Tensor, lo: int, hi: int, numpy: bool):
    """The ``lo``-th and ``hi``-th smallest value (0-based) of each row: NumPy selection on the CPU,
    ``torch.kthvalue`` elsewhere."""
    if numpy:
        part = np.partition(rows.numpy(), sorted({lo, hi}), axis=1)
        return torch.from_numpy(part[:, lo].copy()), torch.from_numpy(part[:, hi].copy())
    below = torch.kthvalue(rows, lo + 1, dim=1).values
    return below, below if hi == lo else torch.kthvalue(rows, hi + 1, dim=1).values


def _row_unit_scale(m: torch.Tensor) -> torch.Tensor:
    """Each row times the power of two that brings its largest |value| into [0.5, 1) (exact; rows are
    normalised next, so the result is unchanged except that norms of huge or tiny rows no longer
    overflow to inf or underflow to 0)."""
    peak = m.abs().amax(dim=1, keepdim=True).double()
    exponent = torch.where(peak > 0, torch.frexp(peak)[1].double(), torch.zeros_like(peak))
    half = torch.floor(-exponent / 2)
    return m * torch.exp2(half).to(m.dtype) * torch.exp2(-exponent - half).to(m.dtype)


def _normalise_rows(m: torch.Tensor, name: str) -> torch.Tensor:
    m = _row_unit_scale(m)
    norms = m.norm(dim=1, keepdim=True)
    zero = (norms.flatten() == 0).nonzero().flatten().tolist()
    if zero:
        raise ValueError(f"{name}: rows {zero[:10]} are all zero and cannot be l2-normalised")
    return m / norms


def _clamp(mats: list[torch.Tensor], q, name: str, clamp: str = "exact") -> list[torch.Tensor]:
    q = check_float(q, "q", 0, 1, low_inclusive=False)
    if q == 1:
        return mats
    t = clamp_threshold(mats, q, clamp).to(mats[0].device)
    if float(t) == 0:
        what = "quantile" if clamp == "exact" else "per-sample quantile (averaged)"
        raise ValueError(f"the {q} {what} of |{name}| is 0 (mostly zeros): clamping would zero every "
                         "row; use a larger q or q=1 (no clamping)")
    return [m.clamp(-t, t) for m in mats]


def _prepare_list(mats: list[torch.Tensor], q, name: str, clamp: str) -> list[torch.Tensor]:
    return [_normalise_rows(m, f"{name}[layer {i}]") for i, m in enumerate(_clamp(mats, q, name, clamp))]


def prepare(feats, q: float = 0.95, clamp: str = "exact"):
    """The paper's feature preparation: clamp outliers, then l2-normalise each row of each layer.

    Every value is clamped to :math:`[-t, t]`, one threshold :math:`t` for the whole input (all
    layers together); no mean-centring. The official code (``remove_outliers`` in platonic-rep's
    ``metrics.py``, the same at commits 4dd084e and dcd76ba) has two rules for :math:`t`:

    ``clamp="exact"`` (default)
        The exact ``q``-quantile of :math:`|x|` over every value of the n x L x d tensor, taken as
        the official code does: ``sorted(|x|)[int(q * numel)]`` (no interpolation). This is the
        official rule with ``measure_alignment.py --precise``, and the one its
        ``platonic/alignment.py`` scorer always uses.
    ``clamp="per_sample"``
        For each sample (row) the ``q``-quantile of its own :math:`|x|` over all its L x d values
        (``torch.quantile``, linear interpolation), then the mean of these n values
        (``per_sample_threshold``). This is what ``measure_alignment.py`` does *without*
        ``--precise``, i.e. with the command the official README gives. Its ``max_threshold``
        argument is never used (no effect). Computed in the input's precision (the official code
        casts to float32 first).

    With a list of layers both rules pool each row's values across the layers, as for a tensor
    (platonic-rep's HEAD, given a list, clamps each layer at its own threshold instead).
    The two thresholds agree when every sample's values follow one distribution and part when
    samples differ in size: the exact rule takes the quantile of all values pooled, the per-sample
    rule the mean of each row's own quantile (heavy-tailed values with log-normal sample scales,
    q = 0.99: the per-sample threshold is 0.6 of the exact one). Chapter 5 measures the difference
    on the book's real features (its grid under both rules).

    Parameters
    ----------
    feats : array-like or torch.Tensor of shape (n, d) or (n, L, d), or a list of (n, d_l) layers
    q : float
        In (0, 1]; ``q = 1`` skips the clamp.
    clamp : {"exact", "per_sample"}
        The threshold rule (above).

    Returns
    -------
    Same kind and shape as ``feats`` (NumPy in, NumPy out; a list gives a list of tensors/arrays).

    Raises
    ------
    ValueError
        for NaN/inf, a zero row (cannot be normalised), a zero clamp threshold, or an unknown
        ``clamp``.
    """
    def like(result, original):
        return result if isinstance(original, torch.Tensor) else result.cpu().numpy()

    clamp = check_clamp(clamp)
    if isinstance(feats, (list, tuple)):
        out = _prepare_list(as_layers(feats, "feats"), q, "feats", clamp)
        return [like(o, f) for o, f in zip(out, feats)]
    t = to_tensor(feats, "feats")
    if t.ndim == 2:
        out = _prepare_list([as_matrix(t, "feats")], q, "feats", clamp)[0]
    elif t.ndim == 3:
        out = torch.stack(_prepare_list(as_layers(t, "feats"), q, "feats", clamp), dim=1)
    else:
        raise ValueError(f"feats must be n x d, n x L x d or a list of n x d layers, got shape {tuple(t.shape)}")
    return like(out, feats)


def prepared_layers(layers, q, include_concat: bool = False, name: str = "layers_a",
                    clamp: str = "exact") -> list[torch.Tensor]:
    """Validated layers after :func:`prepare` (``q=None``: as given), with the concatenation of all
    layers first when ``include_concat`` (the paper-era candidate, index -1). ``clamp``: the
    threshold rule of :func:`prepare`."""
    clamp = check_clamp(clamp)
    mats = as_layers(layers, name)
    if q is not None:
        mats = _clamp(mats, q, name, clamp)
    out = mats if q is None else [_normalise_rows(m, f"{name}[layer {i}]") for i, m in enumerate(mats)]
    if check_bool(include_concat, "include_concat"):
        concat = torch.cat(mats, dim=1)
        out = [concat if q is None else _normalise_rows(concat, f"{name}[all layers]")] + out
    return out


def prepared_layer(layers, index: int, q: float | None = 0.95, include_concat: bool = False,
                   clamp: str = "exact"):
    """One candidate layer exactly as the protocol scored it: the whole tensor clamped at its
    ``q``-quantile, then this layer's rows l2-normalised (index -1 is the concatenation of all
    layers when ``include_concat``, as :func:`best_layer_pair` numbers it).

    Use it to look at the layers a grid or :func:`best_layer_pair` chose (retrieval, gallery
    curves, per-sample scores): preparing one layer on its own would clamp at a different threshold.

    Parameters
    ----------
    layers : n x L x d array/tensor or a list of n x d_l layers
    index : int
        ``0 <= index < L``, or ``-1`` with ``include_concat``.
    q, include_concat, clamp
        As in :func:`best_layer_pair`.

    Returns
    -------
    n x d_index array (a tensor for a tensor input)
    """
    mats = prepared_layers(layers, q, include_concat, "layers", clamp)
    shift = 1 if include_concat else 0
    lo = -1 if include_concat else 0
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not lo <= index < len(mats) - shift:
        raise ValueError(f"index must be an int in [{lo}, {len(mats) - shift - 1}] for these {len(mats) - shift} "
                         f"layers{' (-1: all layers concatenated)' if include_concat else ''}, got {index!r}")
    out = mats[int(index) + shift]
    return out if isinstance(layers, torch.Tensor) else out.cpu().numpy()


def prepared_pair(layers_a, layers_b, q, include_concat, clamp: str = "exact"):
    A = prepared_layers(layers_a, q, include_concat, "layers_a", clamp)
    B = prepared_layers(layers_b, q, include_concat, "layers_b", clamp)
    if A[0].shape[0] != B[0].shape[0]:
        raise ValueError(f"layers_a and layers_b must describe the same samples: {A[0].shape[0]} vs "
                         f"{B[0].shape[0]} rows")
    return A, B


def layer_scores(layers_a, layers_b, metric: str = "mutual_knn", k: int | None = 10, q: float | None = 0.95,
                 include_concat: bool = False, clamp: str = "exact", **options) -> np.ndarray:
    """The metric for every (layer of A, layer of B) pair, after the paper's :func:`prepare`.

    Parameters
    ----------
    layers_a, layers_b : n x L x d arrays/tensors or lists of n x d_l layers
    metric : str
        One of ``METRICS``.
    k : int or None
        Neighbours (neighbour metrics and CKNNA).
    q : float or None
        Clamp quantile for :func:`prepare`; ``None`` uses the layers as given (no clamp, no
        normalisation).
    include_concat : bool
        Add one candidate per model first: all layers side by side (clamped, then l2-normalised as a
        whole), as in the paper-era official code (``measure_alignment.compute_score`` at commit
        4dd084e, its index -1). The result then has shape (L_a + 1, L_b + 1), row/column 0 being the
        concatenation.
    clamp : {"exact", "per_sample"}
        The clamp threshold rule of :func:`prepare`: the exact global quantile (default; official
        ``--precise``) or the mean of per-sample quantiles (the official command's default).
    **options
        The metric's options.

    Returns
    -------
    numpy.ndarray, shape (L_a, L_b), or (L_a + 1, L_b + 1) with ``include_concat``

    Notes
    -----
    Each layer's neighbour lists (or kernel matrix) are computed once and reused for every pair.
    """
    A, B = prepared_pair(layers_a, layers_b, q, include_concat, clamp)
    return layer_scorer(metric, A, B, k, options, where="layer_scores")(None).cpu().numpy()


def best_of(scores, include_concat: bool = False) -> tuple[float, tuple[int, int]]:
    """``max(0, max_ij scores)`` and its (i, j) (first in row-major order on ties; the concatenation,
    when included, is candidate -1 and comes first, as in the official loop)."""
    scores = torch.as_tensor(scores)
    flat = int(torch.argmax(scores))
    i, j = divmod(flat, scores.shape[1])
    shift = 1 if include_concat else 0
    return max(0.0, float(scores[i, j])), (i - shift, j - shift)


def best_layer_pair(layers_a, layers_b, metric: str = "mutual_knn", k: int | None = 10,
                    q: float | None = 0.95, include_concat: bool = False, clamp: str = "exact",
                    **options) -> tuple[float, tuple[int, int]]:
    """The paper's alignment score of two models: the best layer pair, floored at 0.

    Clamp each model's whole tensor at its ``q``-quantile of :math:`|x|` (exact, or per sample and
    averaged with ``clamp="per_sample"``), l2-normalise each layer's rows (:func:`prepare`), compute
    the metric for every layer pair, and return the maximum (floored at 0, as the official loop
    starts its running best at 0) with its layer indices.

    Parameters
    ----------
    layers_a, layers_b, metric, k, q, include_concat, clamp, **options
        As in :func:`layer_scores`. ``include_concat=True`` also tries all layers concatenated
        (index -1), the paper-era protocol; off by default, as in the official code's current version.

    Returns
    -------
    score : float
        ``max(0, max_ij metric(A_i, B_j))``.
    (i, j) : tuple of int
        The arg-max pair (first in row-major order on ties; -1 = the concatenation). Unlike the
        official code, the pair is returned even when no pair scores above 0.

    Notes
    -----
    The maximum over many pairs is biased upwards under the null: use :func:`calibrate_layers`.
    """
    scores = layer_scores(layers_a, layers_b, metric=metric, k=k, q=q, include_concat=include_concat,
                          clamp=clamp, **options)
    return best_of(scores, include_concat)
