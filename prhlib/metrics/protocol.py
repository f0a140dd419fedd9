"""The paper's protocol: prepare the features, score every layer pair, keep the best.

The path from two layered tensors to the paper's score is short::

    best_layer_pair(layers_a, layers_b, metric)
      -> layer_scores: prepared_layers (validate, clamp, l2-normalise; + the concatenation)
                       -> registry.layer_scorer(metric, A, B, k, options)(None)   # La x Lb scores
      -> arg-max, floored at 0
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import as_layers, as_matrix, check_bool, check_float, to_tensor
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


def clamp_threshold(mats: list[torch.Tensor], q: float) -> torch.Tensor:
    """The official "exact" quantile ``sorted(|x|)[int(q * numel)]`` over all layers, by selection
    (O(numel)) instead of a full sort."""
    numel = sum(m.numel() for m in mats)
    index = min(int(q * numel), numel - 1)
    if mats[0].device.type == "cpu":
        flat = np.concatenate([np.abs(m.numpy()).ravel() for m in mats])
        return torch.tensor(np.partition(flat, index)[index])
    flat = torch.cat([m.abs().flatten() for m in mats])
    return torch.kthvalue(flat, index + 1).values


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


def _clamp(mats: list[torch.Tensor], q, name: str) -> list[torch.Tensor]:
    q = check_float(q, "q", 0, 1, low_inclusive=False)
    if q == 1:
        return mats
    t = clamp_threshold(mats, q).to(mats[0].device)
    if float(t) == 0:
        raise ValueError(f"the {q} quantile of |{name}| is 0 (mostly zeros): clamping would zero every "
                         "row; use a larger q or q=1 (no clamping)")
    return [m.clamp(-t, t) for m in mats]


def _prepare_list(mats: list[torch.Tensor], q, name: str) -> list[torch.Tensor]:
    return [_normalise_rows(m, f"{name}[layer {i}]") for i, m in enumerate(_clamp(mats, q, name))]


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
    def like(result, original):
        return result if isinstance(original, torch.Tensor) else result.cpu().numpy()

    if isinstance(feats, (list, tuple)):
        out = _prepare_list(as_layers(feats, "feats"), q, "feats")
        return [like(o, f) for o, f in zip(out, feats)]
    t = to_tensor(feats, "feats")
    if t.ndim == 2:
        out = _prepare_list([as_matrix(t, "feats")], q, "feats")[0]
    elif t.ndim == 3:
        out = torch.stack(_prepare_list(as_layers(t, "feats"), q, "feats"), dim=1)
    else:
        raise ValueError(f"feats must be n x d, n x L x d or a list of n x d layers, got shape {tuple(t.shape)}")
    return like(out, feats)


def prepared_layers(layers, q, include_concat: bool = False, name: str = "layers_a") -> list[torch.Tensor]:
    """Validated layers after :func:`prepare` (``q=None``: as given), with the concatenation of all
    layers first when ``include_concat`` (the paper-era candidate, index -1)."""
    mats = as_layers(layers, name)
    if q is not None:
        mats = _clamp(mats, q, name)
    out = mats if q is None else [_normalise_rows(m, f"{name}[layer {i}]") for i, m in enumerate(mats)]
    if check_bool(include_concat, "include_concat"):
        concat = torch.cat(mats, dim=1)
        out = [concat if q is None else _normalise_rows(concat, f"{name}[all layers]")] + out
    return out


def prepared_layer(layers, index: int, q: float | None = 0.95, include_concat: bool = False):
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
    q, include_concat
        As in :func:`best_layer_pair`.

    Returns
    -------
    n x d_index array (a tensor for a tensor input)
    """
    mats = prepared_layers(layers, q, include_concat, "layers")
    shift = 1 if include_concat else 0
    lo = -1 if include_concat else 0
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not lo <= index < len(mats) - shift:
        raise ValueError(f"index must be an int in [{lo}, {len(mats) - shift - 1}] for these {len(mats) - shift} "
                         f"layers{' (-1: all layers concatenated)' if include_concat else ''}, got {index!r}")
    out = mats[int(index) + shift]
    return out if isinstance(layers, torch.Tensor) else out.cpu().numpy()


def prepared_pair(layers_a, layers_b, q, include_concat):
    A = prepared_layers(layers_a, q, include_concat, "layers_a")
    B = prepared_layers(layers_b, q, include_concat, "layers_b")
    if A[0].shape[0] != B[0].shape[0]:
        raise ValueError(f"layers_a and layers_b must describe the same samples: {A[0].shape[0]} vs "
                         f"{B[0].shape[0]} rows")
    return A, B


def layer_scores(layers_a, layers_b, metric: str = "mutual_knn", k: int | None = 10, q: float | None = 0.95,
                 include_concat: bool = False, **options) -> np.ndarray:
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
    **options
        The metric's options.

    Returns
    -------
    numpy.ndarray, shape (L_a, L_b), or (L_a + 1, L_b + 1) with ``include_concat``

    Notes
    -----
    Each layer's neighbour lists (or kernel matrix) are computed once and reused for every pair.
    """
    A, B = prepared_pair(layers_a, layers_b, q, include_concat)
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
                    q: float | None = 0.95, include_concat: bool = False,
                    **options) -> tuple[float, tuple[int, int]]:
    """The paper's alignment score of two models: the best layer pair, floored at 0.

    Clamp each model's whole tensor at its exact ``q``-quantile of :math:`|x|`, l2-normalise each
    layer's rows (:func:`prepare`), compute the metric for every layer pair, and return the maximum
    (floored at 0, as the official loop starts its running best at 0) with its layer indices.

    Parameters
    ----------
    layers_a, layers_b, metric, k, q, include_concat, **options
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
                          **options)
    return best_of(scores, include_concat)
