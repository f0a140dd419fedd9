"""The one registry of metrics: name -> what to call, its maximum, whether it takes k, its options.

Every function that accepts ``metric=`` (``measure``, ``layer_scores``, ``best_layer_pair``,
``calibrate``, ``calibrate_layers``, ``bootstrap_ci``) looks the name up here, and
:func:`metric_function` rejects options the metric does not have (``kernal="rbf"`` raises).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .._checks import check_bool, check_choice, reject_unknown
from . import geometry, kernels, neighbours

NEIGHBOUR_METRICS = neighbours.NEIGHBOUR_METRICS


@dataclass(frozen=True)
class MetricSpec:
    """One metric. ``fn(a, b, **options)`` (plus ``k=`` when ``takes_k``); ``maximum(k)`` is its
    largest value; ``layer_scorer(A, B, k, **options)``, when set, builds a ``perm -> La x Lb`` score
    function that reuses each layer's expensive part (neighbour lists, kernels, ranks), or returns
    None when that fast path does not apply (then every pair is a fresh ``fn`` call)."""

    fn: Callable
    takes_k: bool = False
    options: tuple[str, ...] = ()
    maximum: Callable[[int | None], float] = lambda k: 1.0
    layer_scorer: Callable | None = None


def _lcs_maximum(k):
    if k is None:
        raise ValueError("lcs_knn needs k (its maximum is k)")
    return float(k)


def _neighbour_spec(name: str) -> MetricSpec:
    return MetricSpec(fn=getattr(neighbours, name), takes_k=True,
                      maximum=_lcs_maximum if name == "lcs_knn" else (lambda k: 1.0),
                      layer_scorer=lambda A, B, k: neighbours.neighbour_scorer(name, A, B, k))


def _cka_layers(unbiased_default: bool):
    def build(A, B, k, kernel="linear", sigma=1.0, unbiased=unbiased_default, median_scale=1.0):
        if not kernels.fits_in_cache(A[0].shape[0], len(A) + len(B)):
            return None
        return kernels.cka_scorer(A, B, check_bool(unbiased, "unbiased"), kernel, sigma, median_scale)
    return build


def _cknna_layers(A, B, k, unbiased=True):
    if not kernels.fits_in_cache(A[0].shape[0], 2 * (len(A) + len(B))):
        return None
    return kernels.cknna_scorer(A, B, k, check_bool(unbiased, "unbiased"))


def _rsa_layers(A, B, k, method="spearman", distance="euclidean"):
    check_choice(distance, "distance", geometry.DISTANCES)
    if (check_choice(method, "method", geometry.RANK_METHODS) != "spearman" or A[0].shape[0] < 3
            or not kernels.fits_in_cache(A[0].shape[0], len(A) + len(B))):
        return None
    return geometry.rsa_scorer(A, B, distance)


#: name -> :class:`MetricSpec`. ``"procrustes"`` is :func:`procrustes_similarity` (higher = more aligned).
REGISTRY: dict[str, MetricSpec] = {
    **{name: _neighbour_spec(name) for name in NEIGHBOUR_METRICS},
    "cka": MetricSpec(kernels.cka, options=("kernel", "sigma", "unbiased", "median_scale"),
                      layer_scorer=_cka_layers(False)),
    "unbiased_cka": MetricSpec(kernels.unbiased_cka, options=("kernel", "sigma", "median_scale"),
                               layer_scorer=_cka_layers(True)),
    "cknna": MetricSpec(kernels.cknna, takes_k=True, options=("unbiased",), layer_scorer=_cknna_layers),
    "svcca": MetricSpec(geometry.svcca, options=("dim",)),
    "rsa": MetricSpec(geometry.rsa, options=("method", "distance"), layer_scorer=_rsa_layers),
    "procrustes": MetricSpec(geometry.procrustes_similarity),
    "linear_predictivity": MetricSpec(geometry.linear_predictivity, options=("alphas", "folds", "seed")),
}

#: Every metric name accepted by ``measure``, ``calibrate`` and the layer functions.
METRICS = tuple(REGISTRY)


def spec(metric: str, options: dict | None = None, where: str = "") -> MetricSpec:
    """The registry entry of ``metric``, after checking that ``options`` are all options it has."""
    if metric not in REGISTRY:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    s = REGISTRY[metric]
    reject_unknown(options or {}, f"{where or 'metric'} (metric={metric!r})", s.options)
    return s


def metric_function(metric: str, k: int | None = None, options: dict | None = None,
                    where: str = "") -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``(a, b) -> float`` for ``metric`` with ``k`` (when it takes k) and ``options`` bound."""
    s = spec(metric, options, where)
    kw = dict(options or {})
    if s.takes_k:
        kw["k"] = k
    return lambda a, b: s.fn(a, b, **kw)


def max_score(metric: str, k: int | None = 10) -> float:
    """The largest value a metric can take (k for ``lcs_knn``, else 1); used by ``calibrate``."""
    return spec(metric).maximum(k)


def layer_scorer(metric: str, A: list[torch.Tensor], B: list[torch.Tensor], k: int | None,
                 options: dict | None = None, where: str = "") -> Callable:
    """A function ``perm -> La x Lb`` tensor of ``metric(A[i], B[j][perm])`` (``perm=None``: as given).

    Uses the metric's fast layer path when it has one, else one metric call per pair.
    """
    s = spec(metric, options, where)
    options = dict(options or {})
    n = A[0].shape[0]
    if B[0].shape[0] != n:
        raise ValueError(f"layers_a and layers_b must describe the same samples: {n} vs {B[0].shape[0]} rows")
    B = [y.to(A[0].device) for y in B]
    fast = s.layer_scorer(A, B, k, **options) if s.layer_scorer is not None else None
    if fast is not None:
        return fast
    fn = metric_function(metric, k, options)

    def score(perm=None):
        out = torch.empty((len(A), len(B)), dtype=torch.float64, device=A[0].device)
        for j, y in enumerate(B):
            yp = y if perm is None else y[perm]
            for i, x in enumerate(A):
                out[i, j] = fn(x, yp)
        return out
    return score
