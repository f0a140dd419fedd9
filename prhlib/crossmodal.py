"""Cross-modal experiments on image--caption pairs (chapter 5).

``alignment_grid``       every (vision model, text model) cell: best-layer score, maxT-calibrated
``probe_accuracy``       a model's competence on a labelled task: cross-validated linear probe
``gallery_curve``        fixed queries, growing gallery: mutual k-NN vs gallery size (Koepke et al. 2026)
``retrieval``            caption <-> image retrieval through a linear map fitted on half the pairs

Inputs are feature matrices (n x d) or layered features (n x L x d, or lists of n x d_l layers) whose
row i of every input describes pair i.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

import torch

from . import metrics
from ._checks import as_array as _matrix, check_int
from ._threads import limited
from .metrics import neighbours


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _same_rows(*arrays_and_names) -> int:
    rows = {name: len(a) for a, name in arrays_and_names}
    if len(set(rows.values())) != 1:
        raise ValueError(f"inputs must describe the same samples (same number of rows), got {rows}")
    return next(iter(rows.values()))


def _unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has all-zero rows, which have no direction")
    return x / norms


# ---------------------------------------------------------------------------------------------
# the model x model grid
# ---------------------------------------------------------------------------------------------
def alignment_grid(vision: Mapping[str, object], text: Mapping[str, object], metric: str = "mutual_knn",
                   k: int = 10, permutations: int = 200, alpha: float = 0.05, q: float = 0.95,
                   seed: int = 0, include_concat: bool = False) -> pd.DataFrame:
    """Best-layer alignment of every (vision, text) model pair, each calibrated by a maxT permutation test.

    Parameters
    ----------
    vision, text : mapping name -> layered features (n x L x d array or list of n x d_l layers)
    metric, k, permutations, alpha, q, seed
        Passed to :func:`prhlib.metrics.calibrate_layers` (the same permutations for every cell).
    include_concat : bool
        The paper-era candidate set: every layer plus all layers concatenated (layer index -1), as
        the official code at commit 4dd084e searched; ``False`` (default) searches single layers only,
        as the official code's HEAD does.

    Returns
    -------
    pandas.DataFrame
        One row per cell, with columns ``vision``, ``text``, ``score``, ``calibrated``, ``threshold``,
        ``p_value``, ``layer_vision``, ``layer_text`` and ``chance`` (:math:`k/(n-1)` for mutual k-NN,
        exact for any features; NaN for other metrics, whose analytic levels assume Gaussian features:
        compare with ``threshold``, the measured null, instead).
    """
    rows = []
    for vname, tname, r in calibrated_pairs(vision, text, metric=metric, k=k, q=q, permutations=permutations,
                                            alpha=alpha, seed=seed, include_concat=include_concat):
        va = vision[vname]
        i, j = int(r.layers[0]), int(r.layers[1])
        n = len(va[0]) if isinstance(va, (list, tuple)) else np.shape(va)[0]
        # k/(n-1) holds for any features (it is the expectation over relabellings); other metrics' analytic
            # levels assume isotropic Gaussian features, which real features are not: use the threshold instead
        level = metrics.chance(metric, n, k=k) if metric == "mutual_knn" else float("nan")
        rows.append({"vision": vname, "text": tname, "score": r.score, "calibrated": r.calibrated,
                     "threshold": r.threshold, "p_value": r.p_value, "layer_vision": i,
                     "layer_text": j, "chance": level})
    return pd.DataFrame(rows)


def calibrated_pairs(vision: Mapping[str, object], text: Mapping[str, object], **calibration):
    """:func:`prhlib.metrics.calibrate_layers` of every (vision, text) model pair.

    Parameters
    ----------
    vision, text : mapping name -> layers
    **calibration
        ``metric``, ``k``, ``q``, ``permutations``, ``alpha``, ``seed``, ``include_concat`` of
        ``calibrate_layers``.

    Returns
    -------
    list of (vision name, text name, result) tuples
    """
    if not vision or not text:
        raise ValueError("give at least one vision and one text model")
    out = []
    for vname, va in vision.items():
        for tname, tb in text.items():
            out.append((vname, tname, metrics.calibrate_layers(va, tb, **calibration)))
    return out


# ---------------------------------------------------------------------------------------------
# competence: a linear probe
# ---------------------------------------------------------------------------------------------
def probe_cv(feats, labels: Sequence, groups: Sequence | None = None, folds: int = 5,
             alphas: Sequence[float] = tuple(np.logspace(-1, 5, 13)), seed: int = 0):
    """The linear probe of :func:`probe_accuracy` and its folds, validated: ``(pipeline, x, y, cv,
    fit_kwargs)`` for scikit-learn's ``cross_val_score`` / ``cross_val_predict`` (run them inside
    ``probe_context()``). One place for the probe, so accuracies and per-item errors
    (:func:`prhlib.limits.probe_errors`) use the same probe and the same folds."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _matrix(feats, "feats")
    y = np.asarray(labels)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must hold one label per row of feats (same number of rows: "
                         f"{x.shape[0]}), got shape {y.shape}")
    if len(set(y.tolist())) < 2:
        raise ValueError("labels must contain at least two classes")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= len(y):
        raise ValueError(f"folds must be an integer in [2, n={len(y)}], got {folds!r}")
    clf = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=list(alphas)))
    if groups is None:
        return clf, x, y, StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed), {}
    g = np.asarray(groups)
    _same_rows((x, "feats"), (g, "groups"))
    return clf, x, y, StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed), {"groups": g}


@contextmanager
def probe_context():
    """One thread, and no warning for classes rarer than the number of folds (stratification is then
    approximate)."""
    with warnings.catch_warnings(), limited(1):
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        yield


def probe_accuracy(feats, labels: Sequence, groups: Sequence | None = None, folds: int = 5,
                   alphas: Sequence[float] = tuple(np.logspace(-1, 5, 13)), seed: int = 0) -> float:
    """Cross-validated accuracy of a linear probe predicting ``labels`` from ``feats``.

    The probe is a one-vs-rest ridge classifier on standardised features (scaler fitted inside each
    training fold), its penalty chosen among ``alphas`` by efficient leave-one-out on the training fold
    (``RidgeClassifierCV``): closed-form, so it costs seconds even for 1,280-d features. With ``groups``
    (e.g. the caption text) samples of one group never straddle train and test, so duplicates cannot leak.

    Parameters
    ----------
    feats : n x d array
    labels : n class labels
    groups : n group ids, optional
    folds : int (stratified; grouped when ``groups`` is given)
    alphas : candidate ridge penalties
    seed : fold assignment

    Returns
    -------
    float, mean test accuracy over folds
    """
    from sklearn.model_selection import cross_val_score

    clf, x, y, cv, kw = probe_cv(feats, labels, groups, folds, alphas, seed)
    with probe_context():
        scores = cross_val_score(clf, x, y, cv=cv, **kw)
    return float(np.mean(scores))


def majority_rate(labels: Sequence) -> float:
    """Accuracy of always predicting the most frequent label (the probe's trivial baseline)."""
    y = pd.Series(np.asarray(labels))
    if y.empty:
        raise ValueError("labels is empty")
    return float(y.value_counts().iloc[0] / len(y))


# ---------------------------------------------------------------------------------------------
# fixed queries, growing gallery
# ---------------------------------------------------------------------------------------------
def query_mutual_knn(a, b, n_queries: int, k: int) -> float:
    """Mutual k-NN averaged over the first ``n_queries`` rows only; neighbours are searched among all rows.

    Ties follow the rule of :func:`prhlib.metrics.mutual_knn`: where a query's k-th and (k + 1)-th
    most similar rows are tied (duplicate rows, e.g. a caption shared by several images), each tied
    candidate counts with its probability of being a neighbour when the tie is broken uniformly at
    random (``prhlib.metrics.neighbours.membership_weights``), so the score does not depend on the
    order of the rows. Without ties it is the plain overlap of the neighbour lists.

    Parameters
    ----------
    a, b : n x d_a, n x d_b (used as given: l2-normalise first for cosine neighbours)
    n_queries : 1 <= n_queries <= n
    k : 1 <= k <= n - 1

    Returns
    -------
    float
        The mean over queries :math:`i` of :math:`\\sum_j p^A_{ij} p^B_{ij} / k`, i.e.
        :math:`|N_a(i) \\cap N_b(i)| / k` where no tie is involved.
    """
    a, b = _matrix(a, "a"), _matrix(b, "b")
    n = _same_rows((a, "a"), (b, "b"))
    n_queries = check_int(n_queries, "n_queries", minimum=1, maximum=n)
    k = check_int(k, "k", minimum=1, maximum=n - 1)
    xa, xb = torch.from_numpy(a), torch.from_numpy(b)   # float64
    step = max(1, neighbours.CHUNK_ELEMENTS // (8 * n))   # query rows per block (a few float64 step x n arrays)
    overlap = torch.cat([(neighbours.membership_weights(xa, rows, k)
                          * neighbours.membership_weights(xb, rows, k)).sum(dim=1)
                         for rows in torch.arange(n_queries).split(step)])
    return float(overlap.mean() / k)


def _resolve_k(k, n: int) -> int:
    if k == "n/100":
        return max(1, round(n / 100))
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1:
        return int(k)
    raise ValueError(f"k must be a positive integer or 'n/100', got {k!r}")


def gallery_curve(a, b, n_queries: int, sizes: Sequence[int], ks: Sequence = (1, 10, "n/100"), repeats: int = 5,
                  seed: int = 0) -> pd.DataFrame:
    """Mutual k-NN of a fixed query set as the gallery around it grows (Koepke et al. 2026).

    For each repeat, a random ``n_queries`` rows are the queries; the gallery is the queries plus the
    first ``size - n_queries`` of a random order of the other rows (nested: a bigger gallery contains
    the smaller ones). Neighbours of each query are searched in the whole gallery.

    Parameters
    ----------
    a, b : n x d each (paired rows; used as given)
    n_queries : int
    sizes : gallery sizes, each in [n_queries, n] and > k
    ks : neighbour counts; ``"n/100"`` means ``max(1, round(size / 100))``
    repeats : independent draws of queries and gallery order
    seed : int

    Returns
    -------
    pandas.DataFrame with columns ``size, k, k_rule, repeat, score, chance`` (chance = k / (size - 1)).
    """
    a, b = _matrix(a, "a"), _matrix(b, "b")
    n = _same_rows((a, "a"), (b, "b"))
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < n_queries or max(sizes) > n:
        raise ValueError(f"every gallery size must lie in [n_queries={n_queries}, n={n}], got {sizes}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(repeats):
        order = rng.permutation(n)
        for size in sizes:
            idx = order[:size]
            for rule in ks:
                k = _resolve_k(rule, size)
                if k > size - 1:
                    raise ValueError(f"k={k} is too large for a gallery of {size}")
                with limited(1):
                    score = query_mutual_knn(a[idx], b[idx], n_queries, k)
                rows.append({"size": size, "k": k, "k_rule": f"k = {rule}", "repeat": r, "score": score,
                             "chance": k / (size - 1)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# retrieval through a linear map
# ---------------------------------------------------------------------------------------------
def chance_topk(n_candidates: int, n_correct: int, top: int) -> float:
    """Probability that a random ranking of ``n_candidates`` puts one of ``n_correct`` right ones in the top ``top``."""
    if not 1 <= n_correct <= n_candidates:
        raise ValueError("need 1 <= n_correct <= n_candidates")
    top = min(top, n_candidates)
    return 1.0 - math.comb(n_candidates - n_correct, top) / math.comb(n_candidates, top)


def rank_accuracy(sims: np.ndarray, query_ids: Sequence, candidate_ids: Sequence, tops=(1, 5)) -> dict:
    """Top-t retrieval accuracy from a similarity matrix, counting any candidate with the query's id as right.

    Parameters
    ----------
    sims : m_queries x m_candidates similarities
    query_ids, candidate_ids : equivalence ids (e.g. the caption text, so identical captions all count)
    tops : the t of top-t accuracy

    Returns
    -------
    dict with ``top{t}`` and ``chance_top{t}`` for each t, and ``median_rank`` (1 = first)
    """
    sims = np.asarray(sims, dtype=np.float64)
    q, c = np.asarray(query_ids), np.asarray(candidate_ids)
    if sims.shape != (len(q), len(c)):
        raise ValueError(f"sims has shape {sims.shape}, expected {(len(q), len(c))}")
    right = q[:, None] == c[None, :]
    if not right.any(axis=1).all():
        raise ValueError("some query has no correct candidate")
    order = np.argsort(-sims, axis=1, kind="stable")
    hit = np.take_along_axis(right, order, axis=1)
    first = hit.argmax(axis=1) + 1
    out = {"median_rank": float(np.median(first))}
    n_right = right.sum(axis=1)
    for t in tops:
        out[f"top{t}"] = float(np.mean(first <= t))
        out[f"chance_top{t}"] = float(np.mean([chance_topk(len(c), int(m), t) for m in n_right]))
    return out


def retrieval(x, y, ids: Sequence, train_fraction: float = 0.5, seed: int = 0, shuffle_train: bool = False,
              alphas: Sequence[float] = tuple(np.logspace(-2, 4, 13)), tops=(1, 5)) -> dict:
    """Fit a ridge map from ``x`` (e.g. images) to ``y`` (e.g. captions) on some pairs; retrieve on the rest.

    Rows of ``x`` and ``y`` are l2-normalised. The map :math:`W` minimises
    :math:`\\|X_{train} W - Y_{train}\\|^2 + \\lambda \\|W\\|^2` with :math:`\\lambda` chosen by
    leave-one-out cross-validation on the training pairs (``RidgeCV``). On the held-out pairs,
    similarities are cosines between :math:`X_{test} W` and :math:`Y_{test}`: rows rank captions for
    each image (x -> y), columns rank images for each caption (y -> x).

    Parameters
    ----------
    x, y : n x d_x, n x d_y paired features
    ids : n equivalence ids (pairs with equal ids are interchangeable answers, e.g. equal captions)
    train_fraction : share of pairs used to fit the map
    seed : the split
    shuffle_train : break the training pairs (a control: the map then learns nothing about pairing)
    alphas : candidate ridge penalties
    tops : the t of top-t accuracy

    Returns
    -------
    dict: ``x_to_y`` and ``y_to_x`` (each from :func:`rank_accuracy`), ``alpha``, ``n_train``, ``n_test``,
    ``test_index``, ``sims`` (n_test x n_test)
    """
    from sklearn.linear_model import RidgeCV

    x, y = _unit_rows(_matrix(x, "x"), "x"), _unit_rows(_matrix(y, "y"), "y")
    ids = np.asarray(ids)
    n = _same_rows((x, "x"), (y, "y"), (ids, "ids"))
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n_train = int(round(train_fraction * n))
    if n_train < 2 or n - n_train < 2:
        raise ValueError(f"need at least 2 training and 2 test pairs, got {n_train} and {n - n_train}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    tr, te = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    y_fit = y[tr][rng.permutation(n_train)] if shuffle_train else y[tr]
    with limited(1):
        model = RidgeCV(alphas=list(alphas)).fit(x[tr], y_fit)
        pred = _unit_rows(model.predict(x[te]), "predictions")
    sims = pred @ y[te].T
    return {
        "x_to_y": rank_accuracy(sims, ids[te], ids[te], tops),
        "y_to_x": rank_accuracy(sims.T, ids[te], ids[te], tops),
        "alpha": float(model.alpha_), "n_train": int(n_train), "n_test": int(n - n_train),
        "test_index": te, "sims": sims,
    }


def last_layer(feats) -> np.ndarray:
    """The last layer of layered features (n x L x d array or list of n x d_l) as an n x d array."""
    if isinstance(feats, (list, tuple)):
        return np.asarray(feats[-1])
    feats = np.asarray(feats)
    if feats.ndim != 3:
        raise ValueError(f"expected n x L x d features, got shape {feats.shape}")
    return feats[:, -1]



# ---------------------------------------------------------------------------------------------
# competence measured away from the evaluation pairs: a dictionary test
# ---------------------------------------------------------------------------------------------
def dictionary_items(n: int = 300, seed: int = 0, known_by: str | None = "glove50") -> tuple[list, list]:
    """``n`` (term, definition) pairs for :func:`dictionary_test`, drawn with ``seed`` from the WordNet
    definitions of the ImageNet classes (:func:`prhlib.data.load_definitions`).

    ``known_by`` keeps only terms with at least one word in that word-vector model's vocabulary, so every
    model is tested on the same terms (GloVe cannot embed a term none of whose words it knows); ``None``
    keeps every term. Returns ``(terms, definitions)``, two lists of n strings in matching order.
    """
    from . import data, models   # the models extra, only when this test is used
    n = check_int(n, "n", minimum=2)
    terms, definitions = data.load_definitions()
    vocab = models.get(known_by).vocab if known_by is not None else None
    known = [i for i, term in enumerate(terms) if vocab is None or any(w in vocab for w in models.words(term))]
    if n > len(known):
        raise ValueError(f"n={n} exceeds the {len(known)} usable terms; choose n <= {len(known)}")
    pick = np.sort(np.random.default_rng(check_int(seed, "seed", minimum=0)).choice(known, n, replace=False))
    return [terms[i] for i in pick], [definitions[i] for i in pick]


def definition_matching(terms_x, definitions_x) -> float:
    """Top-1 accuracy of matching each term to its own definition by cosine similarity.

    Parameters
    ----------
    terms_x, definitions_x : array-like, shapes (n, d)
        Row i of both describes pair i. A zero row (a model that cannot embed the text) counts as a miss.

    Returns
    -------
    float
        In [0, 1]; guessing scores 1/n.
    """
    t, d = _matrix(terms_x, "terms_x"), _matrix(definitions_x, "definitions_x")
    if t.shape != d.shape:
        raise ValueError(f"terms_x {t.shape} and definitions_x {d.shape} must have the same shape")
    tn, dn = np.linalg.norm(t, axis=1, keepdims=True), np.linalg.norm(d, axis=1, keepdims=True)
    t = np.divide(t, tn, out=np.zeros_like(t), where=tn > 0)
    d = np.divide(d, dn, out=np.zeros_like(d), where=dn > 0)
    hits = (t @ d.T).argmax(axis=1) == np.arange(len(t))
    return float(np.mean(hits & (tn[:, 0] > 0)))


def dictionary_test(model: str, terms: Sequence[str], definitions: Sequence[str]) -> float:
    """A text model's competence on data no alignment experiment sees: :func:`definition_matching` of
    its last-layer features of ``terms`` and ``definitions``, embedded in one call (so models fitted on
    their inputs, such as TF-IDF, put both in one space)."""
    from . import features
    terms, definitions = list(terms), list(definitions)
    x = last_layer(features.extract_list(model, terms + definitions))
    return definition_matching(x[:len(terms)], x[len(terms):])
