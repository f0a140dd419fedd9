r"""Translating between two embedding spaces without any pairs.

Two models embed the same n items, but nobody says which row of ``b`` belongs to which row of ``a``.
If the two spaces share their geometry up to a rotation, the geometry alone should recover the
pairing. The method here is written as small steps that each run in well under a second on a CPU:

1. :func:`standardise` each space: centre, unit-length rows, the top ``dim`` principal components,
   unit-length rows again (both spaces now live in ``dim`` dimensions).
2. :func:`similarity_profile`: each item's cosine similarities to its own ``m`` nearest neighbours,
   sorted. A rotation leaves the profile unchanged, so it can be compared *across* spaces
   (the "similarity distribution" initialisation of Artetxe et al. 2018).
3. :func:`initial_matching`: pair items whose profiles agree (a one-to-one assignment).
4. :func:`refine`: alternate an orthogonal Procrustes fit on the current pairs (Schönemann 1966) with a
   matching step (mutual nearest neighbours after mapping) until the pairs stop changing -- the
   self-learning loop of Artetxe et al. (2018) and Conneau et al. (2018).
5. :func:`translate`: several restarts, each seeded by a random half of the initial pairs; the restart
   with the best *unsupervised* objective (:func:`objective`, no hidden pairs) is returned, with all
   restarts kept so their spread can be shown.

Scoring uses the hidden pairing and nothing else does: :func:`retrieval_scores` (top-1 / top-10
retrieval, mean cosine), :func:`permutation_null`, :func:`supervised_map` (Procrustes fitted on the true
pairs: a reference, not an upper bound) and :func:`hide_pairing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from . import metrics
from ._checks import as_array, check_choice, check_float, check_int, check_k
from ._threads import limited

__all__ = [
    "standardise", "similarity_profile", "initial_matching", "fit_rotation", "match", "refine",
    "objective", "translate", "TranslationResult", "hide_pairing", "retrieval_scores", "permutation_null",
    "supervised_map", "MATCHERS",
]


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_array(a, "a"), as_array(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must embed the same items: {a.shape[0]} vs {b.shape[0]} rows "
                         "(take the items both models embed, in any order)")
    return a, b


# ------------------------------------------------------------------------------------------------
# the steps
# ------------------------------------------------------------------------------------------------
def standardise(x, dim: int = 32) -> np.ndarray:
    """Centre, l2-normalise rows, keep the top ``dim`` principal components, l2-normalise again.

    Parameters
    ----------
    x : array (n, d)
    dim : int
        1 <= dim <= min(n - 1, d).

    Returns
    -------
    array (n, dim)
        Unit rows; the coordinates are principal-component scores (a rotation of the centred space
        restricted to its top ``dim`` directions).
    """
    x = as_array(x, "x")
    dim = check_int(dim, "dim", 1, min(x.shape[0] - 1, x.shape[1]))
    x = x - x.mean(axis=0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a row equals the mean of all rows: its direction is undefined (drop duplicates "
                         "of the mean)")
    x = x / norms
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    z = u[:, :dim] * s[:dim]
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def similarity_profile(x, m: int = 50) -> np.ndarray:
    """Each item's cosine similarities to its own ``m`` nearest neighbours, sorted, then standardised.

    Parameters
    ----------
    x : array (n, d), unit rows (see :func:`standardise`)
    m : int
        1 <= m <= n - 1.

    Returns
    -------
    array (n, m)
        Row i: the sorted similarities :math:`s_{i(1)} \\ge \\dots \\ge s_{i(m)}`, centred and scaled to
        unit length (so two spaces with different overall similarity levels can be compared). Invariant
        to any rotation of ``x``.
    """
    t = metrics.as_matrix(x, "x")
    m = check_k(m, t.shape[0], "m")
    nbrs = metrics.knn(t, m)                        # n x m, most similar first
    sims = (t[:, None, :] * t[nbrs]).sum(-1).double().numpy()
    sims = sims - sims.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(sims, axis=1, keepdims=True)
    return sims / np.where(norms == 0, 1.0, norms)


def initial_matching(profile_a, profile_b) -> np.ndarray:
    """One-to-one pairing of the items whose similarity profiles agree best (Hungarian algorithm).

    Parameters
    ----------
    profile_a, profile_b : arrays (n, m)

    Returns
    -------
    array (n,) of int
        ``pairing[i]`` is the row of ``b`` matched to row i of ``a``.
    """
    pa, pb = _check_pair(profile_a, profile_b)
    _, cols = linear_sum_assignment(-(pa @ pb.T))
    return cols


def fit_rotation(a, b) -> np.ndarray:
    """Orthogonal Procrustes: the d x d orthogonal W minimising ||a W - b||_F (rows already paired).

    :func:`prhlib.metrics.procrustes_rotation` (W = U V^T from the SVD of the centred a^T b).
    """
    a, b = _check_pair(a, b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same width for a rotation, got {a.shape[1]} and "
                         f"{b.shape[1]} (standardise both to the same dim)")
    return metrics.procrustes_rotation(a, b)


def _match_mutual(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fwd, bwd = sims.argmax(axis=1), sims.argmax(axis=0)
    src = np.nonzero(bwd[fwd] == np.arange(len(fwd)))[0]
    return src, fwd[src]


def _match_hungarian(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return linear_sum_assignment(-sims)


#: Matching steps: name -> function(similarities n x n) -> (rows of a, matched rows of b).
MATCHERS = {"mutual": _match_mutual, "hungarian": _match_hungarian}


def match(mapped_a, b, method: str = "mutual") -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows after mapping: mutual nearest neighbours (a partial pairing) or Hungarian (a full one).

    Parameters
    ----------
    mapped_a, b : arrays (n, d), unit rows
    method : {"mutual", "hungarian"}

    Returns
    -------
    src, tgt : int arrays of equal length: row ``src[j]`` of ``a`` is paired with row ``tgt[j]`` of ``b``.
    """
    method = check_choice(method, "method", MATCHERS)
    return MATCHERS[method](mapped_a @ b.T)


def refine(a, b, src, tgt, method: str = "mutual", iterations: int = 50):
    """Alternate Procrustes on the current pairs and a matching step until the pairs stop changing.

    Returns
    -------
    w : array (d, d), the last rotation
    src, tgt : the last pairs
    steps : int, iterations run (``iterations`` means it had not settled)
    """
    for step in range(1, iterations + 1):
        w = fit_rotation(a[src], b[tgt])
        new_src, new_tgt = match(a @ w, b, method)
        if len(new_src) == len(src) and (new_src == src).all() and (new_tgt == tgt).all():
            return w, src, tgt, step
        src, tgt = new_src, new_tgt
    return w, src, tgt, iterations


def objective(mapped_a, b) -> float:
    """Unsupervised quality of a map: mean over rows of a of the cosine to the nearest row of b.

    Uses no pairs, so it may choose between restarts.
    """
    return float((mapped_a @ b.T).max(axis=1).mean())


@dataclass
class TranslationResult:
    """What :func:`translate` found (no hidden pairs involved).

    Attributes
    ----------
    a, b : arrays (n, dim), the standardised spaces
    rotation : array (dim, dim), the chosen restart's map (``a @ rotation`` lives in b's space)
    pairing : array (n,), each row of a's nearest row of b after mapping
    objective : float, :func:`objective` of the chosen restart
    restart_rotations, restart_objectives, restart_steps : one entry per restart
    chosen : int, index of the chosen restart
    """

    a: np.ndarray
    b: np.ndarray
    rotation: np.ndarray
    pairing: np.ndarray
    objective: float
    chosen: int
    restart_rotations: list = field(default_factory=list)
    restart_objectives: list = field(default_factory=list)
    restart_steps: list = field(default_factory=list)

    @property
    def mapped(self) -> np.ndarray:
        """a mapped into b's space, (n, dim)."""
        return self.a @ self.rotation


def translate(a, b, dim: int = 32, m: int = 50, restarts: int = 5, keep: float = 0.5,
              method: str = "mutual", iterations: int = 50, seed: int = 0) -> TranslationResult:
    """Find a rotation from a's space to b's from the two spaces alone (rows in any order).

    Parameters
    ----------
    a, b : arrays (n, d_a) and (n, d_b), the same n items, the order of b's rows unknown to the method
    dim : int, principal components kept on both sides
    m : int, neighbours in the similarity profile (1 <= m <= n - 1)
    restarts : int, restart 0 starts from all initial pairs, restart r > 0 from a random ``keep``
        fraction of them
    keep : float in (0, 1]
    method : matching step, a key of :data:`MATCHERS`
    iterations : most refinement steps per restart
    seed : int

    Returns
    -------
    TranslationResult
    """
    a, b = _check_pair(a, b)
    n = a.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 items to translate, got {n}")
    m = check_k(m, n, "m")
    restarts = check_int(restarts, "restarts", 1)
    iterations = check_int(iterations, "iterations", 1)
    keep = check_float(keep, "keep", 0, 1, low_inclusive=False)
    method = check_choice(method, "method", MATCHERS)
    with limited(1):
        za, zb = standardise(a, dim), standardise(b, dim)
        start = initial_matching(similarity_profile(za, m), similarity_profile(zb, m))
        rng = np.random.default_rng(seed)
        rots, objs, steps = [], [], []
        for r in range(restarts):
            src = np.arange(n) if r == 0 else np.sort(rng.choice(n, max(2, int(keep * n)), replace=False))
            w, _, _, step = refine(za, zb, src, start[src], method, iterations)
            rots.append(w)
            objs.append(objective(za @ w, zb))
            steps.append(step)
    best = int(np.argmax(objs))
    pairing = (za @ rots[best] @ zb.T).argmax(axis=1)
    return TranslationResult(za, zb, rots[best], pairing, objs[best], best, rots, objs, steps)


# ------------------------------------------------------------------------------------------------
# scoring against the hidden pairs
# ------------------------------------------------------------------------------------------------
def hide_pairing(b, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle b's rows so that no method can use their order.

    Returns
    -------
    shuffled : array (n, d_b)
    truth : int array (n,), row i of a belongs with row ``truth[i]`` of ``shuffled``
    """
    b = as_array(b, "b")
    order = np.random.default_rng(seed).permutation(b.shape[0])
    return b[order], np.argsort(order)


def _check_truth(truth, n: int) -> np.ndarray:
    truth = np.asarray(truth)
    if truth.shape != (n,) or not np.array_equal(np.sort(truth), np.arange(n)):
        raise ValueError(f"truth must be a permutation of 0..{n - 1} (one row of b per row of a)")
    return truth


def retrieval_scores(mapped_a, b, truth, ks=(1, 10)) -> dict:
    """Top-k retrieval accuracy and mean cosine of the true pairs after mapping.

    Parameters
    ----------
    mapped_a, b : arrays (n, d), unit rows
    truth : int array (n,), the hidden pairing
    ks : tuple of int

    Returns
    -------
    dict
        ``top{k}``: fraction of rows of a whose true partner is among their k most similar rows of b
        (chance k/n); ``cosine``: mean cosine between each mapped row and its true partner.
    """
    mapped_a, b = _check_pair(mapped_a, b)
    n = mapped_a.shape[0]
    truth = _check_truth(truth, n)
    sims = mapped_a @ b.T
    true = sims[np.arange(n), truth]
    rank = (sims > true[:, None]).sum(axis=1)       # how many rows of b beat the true partner
    out = {f"top{k}": float((rank < check_int(k, "k", 1, n)).mean()) for k in ks}
    out["cosine"] = float(true.mean())
    return out


def permutation_null(mapped_a, b, truth, permutations: int = 200, ks=(1, 10), seed: int = 0):
    """The same scores against random pairings (the map fixed, the hidden pairing shuffled).

    Returns
    -------
    pandas.DataFrame, one row per permutation, the columns of :func:`retrieval_scores`
    """
    import pandas as pd

    mapped_a, b = _check_pair(mapped_a, b)
    _check_truth(truth, mapped_a.shape[0])
    permutations = check_int(permutations, "permutations", 1)
    rng = np.random.default_rng(seed)
    rows = [retrieval_scores(mapped_a, b, rng.permutation(mapped_a.shape[0]), ks) for _ in range(permutations)]
    return pd.DataFrame(rows)


def supervised_map(a, b, truth) -> np.ndarray:
    """Reference: the Procrustes rotation fitted on the *true* pairs of the standardised spaces.

    ``a``, ``b`` are the standardised spaces (``TranslationResult.a``/``.b``). Fitted and scored on the same
    items, as the unsupervised map is; a reference for what one rotation can do, not an upper bound on
    what an unsupervised method could reach.
    """
    a, b = _check_pair(a, b)
    truth = _check_truth(truth, a.shape[0])
    return fit_rotation(a, b[truth])
