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
    :func:`measure` (names in ``METRICS``; one registry, ``REGISTRY``, says for each metric
    what to call, its maximum, whether it takes k and which options it accepts).
The paper's protocol over layers
    :func:`prepare`, :func:`layer_scores`, :func:`best_layer_pair`, :func:`prepared_layer` (the
    layer a search chose, as it was scored).
How far from chance?
    :func:`chance` (analytic null levels), :func:`calibrate` (permutation test, threshold, p-value,
    calibrated score), :func:`calibrate_layers` (the same for a maximum over layer pairs, "maxT"),
    :func:`bootstrap_ci` (confidence interval over samples), :func:`bootstrap_difference` (paired
    interval of a difference of two scores), :func:`rank_correlation` (a correlation over items with
    interval and permutation p-value), :func:`permutation_p_value` / :func:`permutation_threshold`
    (the one exact rule of every permutation test).

Where the code lives
    ``neighbours`` (one k-NN search, the neighbour metrics), ``kernels`` (Gram matrices, HSIC, CKA,
    CKNNA), ``geometry`` (SVCCA, RSA, Procrustes, linear predictivity), ``registry`` (the metric
    table), ``protocol`` (prepare, layer scores, best layer pair), ``inference`` (chance,
    calibration, bootstrap, meta-statistics).

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

from .._checks import as_layers, as_matrix
from .geometry import (RSAResult, linear_predictivity, procrustes_distance, procrustes_rotation,
                       procrustes_similarity, rsa, rsa_from_distances, rsa_test, svcca)
from .inference import (BootstrapResult, CalibrationResult, CorrelationResult, DifferenceResult,
                        bootstrap_ci, bootstrap_difference, calibrate, calibrate_layers, chance,
                        permutation_p_value, permutation_threshold, rank_correlation)
from .kernels import (GRAM_CACHE_BYTES, center, cka, cknna, gram_linear, gram_rbf, hsic, hsic_biased,
                      hsic_unbiased, unbiased_cka)
from .neighbours import (CHUNK_ELEMENTS, NEIGHBOUR_METRICS, cycle_knn, edit_distance_knn, knn, lcs_knn,
                         mutual_knn, per_sample_scores)
from .protocol import best_layer_pair, layer_scores, measure, prepare, prepared_layer
from .registry import METRICS, REGISTRY, MetricSpec, max_score

__all__ = [
    "METRICS", "NEIGHBOUR_METRICS", "REGISTRY", "MetricSpec", "as_matrix", "as_layers", "knn",
    "mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "per_sample_scores", "gram_linear",
    "gram_rbf", "center", "hsic", "hsic_biased", "hsic_unbiased", "cka", "unbiased_cka", "cknna",
    "svcca", "rsa", "rsa_from_distances", "rsa_test", "RSAResult", "procrustes_distance",
    "procrustes_similarity", "procrustes_rotation", "linear_predictivity", "measure", "max_score",
    "prepare", "prepared_layer", "layer_scores", "best_layer_pair", "chance", "calibrate", "calibrate_layers",
    "bootstrap_ci", "bootstrap_difference", "rank_correlation", "permutation_p_value",
    "permutation_threshold", "CalibrationResult", "BootstrapResult", "CorrelationResult",
    "DifferenceResult", "CHUNK_ELEMENTS", "GRAM_CACHE_BYTES",
]
