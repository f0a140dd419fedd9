"""Pointwise mutual information: the kernel a contrastive learner converges to (Huh et al. 2024, Sec. 4).

One estimator serves every chapter: :func:`from_counts` turns a co-occurrence count table into PMI (the
colour chapter's image PMI and this module's Monte-Carlo check), and :func:`exact` gives the PMI of a known
joint law. The rest builds a small world whose joint law is known exactly and measures what contrastive
learners make of it:

* the world: a random walk on a torus of ``sizes`` (one ring per factor) with a little teleportation,
  :func:`torus_chain`; the co-occurrence law of states within ``window`` steps, :func:`window_joint`;
  samples of co-occurring pairs, :func:`sample_pairs`, and their counts, :func:`cooccurrence_counts`;
* observations of a state in two "modalities": :func:`random_observer` (a random nonlinear sensor, which
  hides the torus geometry) and :func:`token_observer` (one arbitrary token per factor; ``keep`` drops
  factors, a lossy observation);
* a learner: an MLP trained with the zoo's InfoNCE loss (:func:`prhlib.zoo.info_nce`) on co-occurring
  pairs of one modality, by backpropagation or by feedback alignment (:func:`train`, cached on disk);
* kernel comparison: rank correlation of kernel entries with a bootstrap over *states* and a Mantel
  permutation null (:func:`compare`), the affine fit ``K = a PMI + c`` (:func:`affine_fit`) and features
  whose Gram matrix is the positive part of a PMI kernel (:func:`embedding`) for ``metrics.mutual_knn``
  and ``metrics.cka``.

Examples
--------
>>> from prhlib import pmi
>>> law = pmi.window_joint(pmi.torus_chain((4, 3)), window=2)
>>> pmi.exact(law).shape
(12, 12)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from . import __version__, config as _config, zoo

from ._io import atomic_write
from ._train import descend


# --------------------------------------------------------------------------------------------------
# PMI: from counts, and exact
# --------------------------------------------------------------------------------------------------
def _pmi_of_table(table: np.ndarray) -> np.ndarray:
    p = table / table.sum()
    row = p.sum(axis=1)
    col = np.ascontiguousarray(p.T).sum(axis=1)  # equals ``row`` bit for bit when p is symmetric
    return np.log(p) - np.log(row)[:, None] - np.log(col)[None, :]


def _check_table(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"{name} must be a 2-D table (n_a x n_b), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    if x.min() < 0:
        raise ValueError(f"{name} must be non-negative, found {x.min()}")
    return x


def from_counts(counts, smoothing: float = 0.0) -> np.ndarray:
    """PMI estimated from a joint count table.

    ``PMI(u, v) = log p(u, v) - log p(u) - log p(v)`` with ``p(u, v) = (C[u, v] + s) / sum(C + s)``,
    ``p(u) = sum_v p(u, v)`` and ``p(v) = sum_u p(u, v)``; ``s = smoothing`` is a pseudo-count added to
    every cell. For a symmetric table (co-occurrence counted both ways) the two marginals coincide.

    Parameters
    ----------
    counts : array_like, shape (n_a, n_b), finite, non-negative
    smoothing : float, >= 0

    Returns
    -------
    ndarray, shape (n_a, n_b)

    Raises
    ------
    ValueError
        for a table that is not 2-D, holds NaN/inf or negative counts, a negative ``smoothing``, or empty
        cells (zero counts give ``PMI = -inf``; rows/columns with no counts at all have no marginal):
        pass ``smoothing > 0`` or drop those events.
    """
    table = _check_table(counts, "counts")
    if not np.isfinite(smoothing) or smoothing < 0:
        raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing}")
    table = table + smoothing
    empty_rows = np.flatnonzero(table.sum(axis=1) == 0)
    empty_cols = np.flatnonzero(table.sum(axis=0) == 0)
    if len(empty_rows) or len(empty_cols):
        raise ValueError(f"events with zero marginal count (rows {empty_rows.tolist()[:10]}, columns "
                         f"{empty_cols.tolist()[:10]}) have no PMI: drop them, or pass smoothing > 0")
    if np.any(table == 0):
        raise ValueError(f"{int((table == 0).sum())} cells of the count table are empty, so their PMI is "
                         "-inf: pass smoothing > 0 (a pseudo-count) or keep fewer, more frequent events")
    return _pmi_of_table(table)


def exact(joint, atol: float = 1e-8) -> np.ndarray:
    """The PMI of a known joint law ``P(z_a, z_b)``: ``log P(a, b) - log P(a) - log P(b)``.

    Parameters
    ----------
    joint : array_like, shape (n_a, n_b)
        Probabilities, non-negative, summing to 1 (within ``atol``), every cell > 0.
    atol : float
        Tolerance on the total.

    Raises
    ------
    ValueError
        for a table that is not a probability law, or with zero cells (their PMI is ``-inf``: mix the
        law with a little of the product of its marginals, or compare kernels only on its support).
    """
    p = _check_table(joint, "joint")
    if abs(p.sum() - 1.0) > atol:
        raise ValueError(f"joint must sum to 1, sums to {p.sum():.6g}: divide by its total first")
    if np.any(p == 0):
        raise ValueError(f"{int((p == 0).sum())} cells of the joint law are 0, so their PMI is -inf: mix the law "
                         "with a little of the product of its marginals, or compare only on its support")
    return _pmi_of_table(p)


# --------------------------------------------------------------------------------------------------
# the world: a walk on a torus, its co-occurrence law, samples
# --------------------------------------------------------------------------------------------------
def _ring_walk(size: int, move: float, teleport: float) -> np.ndarray:
    t = np.zeros((size, size))
    for i in range(size):
        t[i, i] += 1 - move
        t[i, (i - 1) % size] += move / 2
        t[i, (i + 1) % size] += move / 2
    return (1 - teleport) * t + teleport / size


def torus_chain(sizes: Sequence[int] = (10, 6), moves: Sequence[float] | float = 0.5,
                teleport: float = 0.02) -> np.ndarray:
    """Transition matrix of a walk on a torus: each factor is a ring that moves independently.

    At each step factor ``f`` steps to a neighbour on its ring with probability ``moves[f]`` (left or
    right alike), else stays, and with probability ``teleport`` jumps to a uniform value. States are
    numbered row-major: ``state = ((z_0 * sizes[1]) + z_1) * ...`` (see :func:`factor_values`).

    Returns
    -------
    ndarray, shape (N, N), ``N = prod(sizes)``; rows sum to 1.
    """
    sizes = tuple(int(s) for s in sizes)
    if not sizes or min(sizes) < 3:
        raise ValueError(f"sizes must be one or more ring sizes >= 3, got {sizes}")
    moves = np.broadcast_to(np.asarray(moves, dtype=float), (len(sizes),))
    if np.any(moves < 0) or np.any(moves > 1) or not 0 <= teleport <= 1:
        raise ValueError(f"moves and teleport must be probabilities, got {moves.tolist()}, {teleport}")
    t = np.ones((1, 1))
    for size, move in zip(sizes, moves):
        t = np.kron(t, _ring_walk(size, move, teleport))
    return t


def factor_values(sizes: Sequence[int]) -> np.ndarray:
    """Value of each factor for every state, shape (N, n_factors) (row-major numbering)."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), tuple(sizes)), axis=1)


def stationary(transition) -> np.ndarray:
    """Stationary distribution of an ergodic transition matrix, shape (N,)."""
    t = np.asarray(transition, dtype=float)
    w, v = np.linalg.eig(t.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    return pi / pi.sum()


def window_joint(transition, window: int = 3) -> np.ndarray:
    """Co-occurrence law of two states at most ``window`` steps apart on the stationary chain.

    ``P(a, b) = 1/W sum_{w=1..W} (pi_a T^w[a, b] + pi_b T^w[b, a]) / 2``: a lag drawn uniformly from
    1..W, the order of the pair forgotten (so ``P`` is symmetric). This is what :func:`sample_pairs`
    draws and :func:`cooccurrence_counts` counts.
    """
    t = np.asarray(transition, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or not np.allclose(t.sum(axis=1), 1):
        raise ValueError("transition must be a square matrix whose rows sum to 1")
    if int(window) < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    pi = stationary(t)
    step, total = np.eye(len(t)), np.zeros_like(t)
    for _ in range(int(window)):
        step = step @ t
        total += pi[:, None] * step
    joint = total / int(window)
    return (joint + joint.T) / 2


def sample_pairs(transition, window: int, n_pairs: int, seed: int = 0) -> np.ndarray:
    """Co-occurring pairs from one long run of the chain (started from its stationary law).

    Each pair is ``(z_t, z_{t+w})`` with ``t`` the run's steps and a lag ``w`` uniform in 1..window; the
    order of each pair is flipped with probability 1/2. Returns int array, shape (n_pairs, 2).
    """
    t = np.asarray(transition, dtype=float)
    rng = np.random.default_rng(seed)
    n, window = len(t), int(window)
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    cdf = np.cumsum(t, axis=1)
    cdf[:, -1] = 1.0
    steps = n_pairs + window
    run = np.empty(steps, dtype=np.int64)
    run[0] = rng.choice(n, p=stationary(t))
    u = rng.random(steps)
    for i in range(1, steps):
        run[i] = np.searchsorted(cdf[run[i - 1]], u[i], side="right")
    lag = rng.integers(1, window + 1, size=n_pairs)
    pairs = np.stack([run[:n_pairs], run[np.arange(n_pairs) + lag]], axis=1)
    flip = rng.random(n_pairs) < 0.5
    pairs[flip] = pairs[flip, ::-1]
    return pairs


def cooccurrence_counts(pairs, n_states: int) -> np.ndarray:
    """Symmetric count table of pairs (each pair counted once in each order), shape (N, N)."""
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.min() < 0 or pairs.max() >= n_states:
        raise ValueError(f"pairs must be an (n, 2) array of states in 0..{n_states - 1}")
    c = np.zeros((n_states, n_states))
    np.add.at(c, (pairs[:, 0], pairs[:, 1]), 1.0)
    return c + c.T


def marginal_law(joint, sizes: Sequence[int], keep: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The co-occurrence law of the kept factors only, and each state's kept value.

    Returns
    -------
    joint_kept : ndarray, shape (M, M), ``M = prod(sizes[keep])``
    labels : int ndarray, shape (N,): the kept-factor state of each full state, so that
        ``exact(joint_kept)[labels][:, labels]`` is the PMI kernel a learner that sees only the kept
        factors converges to, written over the full states.
    """
    sizes, keep = tuple(sizes), tuple(keep)
    if not keep or any(f not in range(len(sizes)) for f in keep):
        raise ValueError(f"keep must name factors among 0..{len(sizes) - 1}, got {keep}")
    values = factor_values(sizes)
    labels = np.ravel_multi_index(tuple(values[:, f] for f in keep), tuple(sizes[f] for f in keep))
    m = int(labels.max()) + 1
    onehot = np.eye(m)[labels]
    return onehot.T @ np.asarray(joint, dtype=float) @ onehot, labels


# --------------------------------------------------------------------------------------------------
# observers: the same states in two modalities
# --------------------------------------------------------------------------------------------------
def random_observer(n_states: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """A random nonlinear sensor: state ``i`` is seen as ``tanh(W h_i)`` with Gaussian ``h_i`` and ``W``.

    Injective with probability 1 and blind to the torus geometry (nearby states look no more alike
    than distant ones). Returns float32 array, shape (n_states, dim).
    """
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n_states, dim))
    w = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return np.tanh(h @ w * 1.5).astype(np.float32)


def token_observer(sizes: Sequence[int], keep: Sequence[int] | None = None, seed: int = 0) -> np.ndarray:
    """Words for states: one token per kept factor, with arbitrary (shuffled) token names.

    The observation is the concatenated one-hot code of the kept factors' tokens. Keeping every factor
    is a bijective observation; dropping one (``keep=(0,)``) maps all states that differ only in the
    dropped factor to the same words. Returns float32 array, shape (N, sum of kept sizes).
    """
    sizes = tuple(sizes)
    keep = tuple(range(len(sizes))) if keep is None else tuple(keep)
    if not keep or any(f not in range(len(sizes)) for f in keep):
        raise ValueError(f"keep must name factors among 0..{len(sizes) - 1}, got {keep}")
    rng = np.random.default_rng(seed)
    values = factor_values(sizes)
    parts = [np.eye(sizes[f])[rng.permutation(sizes[f])][values[:, f]] for f in keep]
    return np.concatenate(parts, axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# learners: an MLP trained with InfoNCE, by backprop or feedback alignment
# --------------------------------------------------------------------------------------------------
class _FeedbackAlignment(torch.autograd.Function):
    """``y = x W^T + b``; the backward pass sends the error through a fixed random ``B`` instead of
    ``W`` (Lillicrap et al. 2016); weight gradients are the usual outer products."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x, feedback)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        return grad @ feedback, grad.T @ x, grad.sum(0), None


class FALinear(nn.Linear):
    """A linear layer trained by feedback alignment (a fixed random feedback matrix, no weight transport)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__(d_in, d_out)
        self.register_buffer("feedback", torch.randn(d_out, d_in) / np.sqrt(d_in))

    def forward(self, x):
        return _FeedbackAlignment.apply(x, self.weight, self.bias, self.feedback)


#: learning rule -> linear layer class
RULES: dict[str, type] = {"backprop": nn.Linear, "feedback_alignment": FALinear}
ACTIVATIONS: dict[str, type] = {"relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class LearnerConfig:
    """One contrastive learner: ``depth`` hidden layers of ``width`` units, an output of ``dim``.

    ``temperature`` is the InfoNCE temperature; the learned kernel is ``cos(f(x), f(y)) / temperature``.
    ``steps`` Adam steps of ``batch`` pairs drawn from the training pairs, learning rate ``lr``,
    decoupled weight decay ``weight_decay`` (AdamW); ``rule`` one of :data:`RULES`.
    """

    width: int = 64
    depth: int = 2
    dim: int = 16
    activation: str = "relu"
    rule: str = "backprop"
    temperature: float = 0.1
    weight_decay: float = 0.0
    steps: int = 800
    batch: int = 256
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; choose one of {sorted(RULES)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        for name in ("width", "depth", "dim", "steps", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0 or self.weight_decay < 0 or not self.lr > 0:
            raise ValueError("temperature and lr must be > 0 and weight_decay >= 0")


def build(d_in: int, cfg: LearnerConfig) -> nn.Sequential:
    """The encoder: ``depth`` x (linear, activation), then a linear map to ``dim`` (seeded by ``cfg.seed``)."""
    layer, act = RULES[cfg.rule], ACTIVATIONS[cfg.activation]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        mods, d = [], d_in
        for _ in range(cfg.depth):
            mods += [layer(d, cfg.width), act()]
            d = cfg.width
        mods.append(layer(d, cfg.dim))
        return nn.Sequential(*mods)


def _key(obs: np.ndarray, pairs: np.ndarray, cfg: LearnerConfig, checkpoints) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([dataclasses.asdict(cfg), list(checkpoints), __version__], sort_keys=True).encode())
    h.update(np.ascontiguousarray(obs, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(pairs, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _fit(obs: np.ndarray, pairs: np.ndarray, cfg: LearnerConfig, checkpoints) -> dict:
    x = torch.as_tensor(obs, dtype=torch.float32)
    p = torch.as_tensor(pairs, dtype=torch.int64)
    model = build(x.shape[1], cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)

    def embedding() -> np.ndarray:
        with torch.no_grad():
            return model(x).numpy().copy()

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        z = model(x)  # every state's embedding; the batch picks its pairs
        return zoo.info_nce(z[p[idx, 0]], z[p[idx, 1]], cfg.temperature)

    batches = (torch.randint(len(p), (cfg.batch,), generator=g) for _ in range(cfg.steps))  # drawn lazily
    with zoo.reproducible("cpu"):
        snaps = {0: embedding()} if 0 in checkpoints else {}
        losses = []
        for step, loss in enumerate(descend(opt, batches, loss_of, what=f"for {cfg}"), start=1):
            losses.append(loss)
            if step in checkpoints:
                snaps[step] = embedding()
        final = embedding()
    return {"embedding": final, "checkpoints": np.array(sorted(snaps), dtype=np.int64),
            "snapshots": np.stack([snaps[s] for s in sorted(snaps)]) if snaps else np.zeros((0,) + final.shape),
            "loss": np.array(losses)}


def train(obs, pairs, cfg: LearnerConfig | None = None, checkpoints: Sequence[int] = (),
          cache: bool = True) -> dict:
    """Train one encoder with InfoNCE on co-occurring pairs of one modality; cached on disk.

    The positives of a batch are ``(obs[a], obs[b])`` for sampled pairs ``(a, b)``; the other rows of
    the batch are its negatives (:func:`prhlib.zoo.info_nce`, symmetric). Each step draws ``batch``
    pairs with replacement and goes through the zoo's own loop (``prhlib._train.descend``, shared
    with :func:`prhlib.zoo.train`); only the batching differs, because these encoders see a table of
    observations, not the zoo's scenes. A non-finite loss raises ``RuntimeError`` (lower ``lr``).

    Parameters
    ----------
    obs : array_like, shape (N, d_in)
        The observation of every state.
    pairs : int array_like, shape (n_pairs, 2)
        Training pairs of co-occurring states.
    cfg : LearnerConfig
    checkpoints : sequence of int
        Steps at which to keep every state's embedding as well (step 0 = untrained).

    Returns
    -------
    dict with ``embedding`` (N x dim, after training), ``checkpoints`` (int array), ``snapshots``
    (len(checkpoints) x N x dim) and ``loss`` (per step).
    """
    cfg = cfg or LearnerConfig()
    obs = np.asarray(obs, dtype=np.float32)
    pairs = np.asarray(pairs)
    if obs.ndim != 2 or not np.all(np.isfinite(obs)):
        raise ValueError(f"obs must be a finite N x d array, got shape {obs.shape}")
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.min() < 0 or pairs.max() >= len(obs):
        raise ValueError(f"pairs must be an (n, 2) integer array of rows of obs (0..{len(obs) - 1})")
    checkpoints = tuple(sorted({int(c) for c in checkpoints}))
    if checkpoints and (checkpoints[0] < 0 or checkpoints[-1] > cfg.steps):
        raise ValueError(f"checkpoints must lie in 0..{cfg.steps}, got {checkpoints}")
    path = _config.cache_dir("pmi") / f"{_key(obs, pairs, cfg, checkpoints)}.npz"
    if cache and path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    out = _fit(obs, pairs, cfg, checkpoints)
    if cache:
        atomic_write(path, lambda fh: np.savez(fh, **out))
    return out


# --------------------------------------------------------------------------------------------------
# kernels and their comparison
# --------------------------------------------------------------------------------------------------
def kernel(embedding, temperature: float = 1.0) -> np.ndarray:
    """The learner's kernel ``cos(f_i, f_j) / temperature``, shape (N, N)."""
    z = np.asarray(embedding, dtype=float)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    return z @ z.T / temperature


def off_diagonal(k) -> np.ndarray:
    """The entries above the diagonal of a square kernel, shape (N(N-1)/2,)."""
    k = np.asarray(k)
    return k[np.triu_indices(len(k), 1)]


def _check_kernels(*ks) -> list[np.ndarray]:
    out = [np.asarray(k, dtype=float) for k in ks]
    n = out[0].shape
    for k in out:
        if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape != n or len(k) < 4:
            raise ValueError(f"kernels must be square N x N arrays of one size (N >= 4), got {[x.shape for x in out]}")
        if not np.all(np.isfinite(k)):
            raise ValueError("a kernel contains NaN or inf (empty cells of a PMI table? smooth them)")
    return out


def spearman(k, l) -> float:
    """Spearman correlation of the off-diagonal entries of two kernels over the same states."""
    k, l = _check_kernels(k, l)
    return float(stats.spearmanr(off_diagonal(k), off_diagonal(l))[0])


def spearman_on(k, l, idx) -> float:
    """:func:`spearman` on the states ``idx`` (a bootstrap draw; pairs of a state with itself skipped)."""
    idx = np.asarray(idx)
    i, j = np.triu_indices(len(idx), 1)
    keep = idx[i] != idx[j]  # a state drawn twice is not a pair
    a, b = idx[i[keep]], idx[j[keep]]
    return float(stats.spearmanr(k[a, b], l[a, b])[0])


def bootstrap_states(statistic: Callable, kernels: Sequence, n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """``statistic(kernels, idx)`` over bootstrap resamples ``idx`` of the states (not of kernel entries,
    which share states and are not independent). Returns shape (n_boot,)."""
    kernels = _check_kernels(*kernels)
    rng = np.random.default_rng(seed)
    n = len(kernels[0])
    return np.array([statistic(kernels, rng.integers(0, n, n)) for _ in range(int(n_boot))])


@dataclass(frozen=True)
class KernelComparison:
    """Spearman correlation of two kernels' entries, its bootstrap interval over states, and the Mantel
    permutation null (the states of one kernel relabelled)."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    null_q95: float   # 95th percentile of the permutation null
    null_mean: float


def compare(k, l, n_boot: int = 200, permutations: int = 200, seed: int = 0, alpha: float = 0.05
            ) -> KernelComparison:
    """Rank correlation of two kernels with an interval and a null.

    Parameters
    ----------
    k, l : array_like, shape (N, N)
        Kernels over the same N states (e.g. a learned kernel and the exact PMI).
    n_boot : int
        Bootstrap resamples of the states (percentile interval, level ``1 - alpha``).
    permutations : int
        Mantel permutations: ``l`` with its states relabelled, ``l[p][:, p]``.
    """
    k, l = _check_kernels(k, l)
    if n_boot < 10 or permutations < 10 or not 0 < alpha < 1:
        raise ValueError("n_boot and permutations must be >= 10 and alpha in (0, 1)")
    est = spearman(k, l)
    boots = bootstrap_states(lambda ks, idx: spearman_on(ks[0], ks[1], idx), [k, l], n_boot, seed)
    rng = np.random.default_rng(seed + 1)
    null = np.empty(permutations)
    for b in range(permutations):
        p = rng.permutation(len(l))
        null[b] = stats.spearmanr(off_diagonal(k), off_diagonal(l[p][:, p]))[0]
    lo, hi = np.nanquantile(boots, [alpha / 2, 1 - alpha / 2])
    return KernelComparison(est, float(lo), float(hi), float((1 + np.sum(null >= est)) / (permutations + 1)),
                            float(np.quantile(null, 0.95)), float(null.mean()))


def difference(pairs_a: Sequence, pairs_b: Sequence, n_boot: int = 200, seed: int = 0,
               alpha: float = 0.05) -> dict:
    """Mean kernel Spearman over ``pairs_a`` minus the mean over ``pairs_b``, with a paired bootstrap.

    Every kernel is resampled on the *same* bootstrap draw of states, so shared states do not inflate
    the certainty of the difference (e.g. a wide learner vs a narrow one against the same PMI, or seeds
    of one rule vs seeds of another).

    Parameters
    ----------
    pairs_a, pairs_b : sequences of (K, L) pairs of N x N kernels over the same states

    Returns
    -------
    dict with ``estimate``, ``ci_low``, ``ci_high`` (percentile, level ``1 - alpha``) and ``p_value``
    (share of resamples on the other side of 0, doubled: a bootstrap test of "no difference").
    """
    pairs_a, pairs_b = list(pairs_a), list(pairs_b)
    if not pairs_a or not pairs_b or any(len(p) != 2 for p in pairs_a + pairs_b):
        raise ValueError("pairs_a and pairs_b must be non-empty lists of (K, L) kernel pairs")
    flat = [k for pair in pairs_a + pairs_b for k in pair]
    na = 2 * len(pairs_a)

    def stat(ks, idx):
        a = [spearman_on(ks[i], ks[i + 1], idx) for i in range(0, na, 2)]
        b = [spearman_on(ks[i], ks[i + 1], idx) for i in range(na, len(ks), 2)]
        return float(np.mean(a) - np.mean(b))

    full = np.arange(len(_check_kernels(*flat)[0]))
    est = stat([np.asarray(k, dtype=float) for k in flat], full)
    boots = bootstrap_states(stat, flat, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(np.mean(boots <= 0), np.mean(boots >= 0)) + 1 / (n_boot + 1))
    return {"estimate": est, "ci_low": float(lo), "ci_high": float(hi), "p_value": float(p)}


def affine_fit(learned, target) -> dict:
    """Least-squares fit ``learned = slope * target + offset`` over off-diagonal entries.

    Returns ``{"slope", "offset", "r2"}``. Theory (``<f, f> = PMI + c``) predicts slope 1 for an
    unconstrained learner; a temperature that bounds the kernel's range shows up as slope < 1.
    """
    a, b = (off_diagonal(x) for x in _check_kernels(learned, target))
    slope, offset = np.polyfit(b, a, 1)
    resid = a - (slope * b + offset)
    return {"slope": float(slope), "offset": float(offset), "r2": float(1 - resid.var() / a.var())}


def embedding(pmi_matrix, dim: int | None = None) -> np.ndarray:
    """Features whose Gram matrix is the positive part of a symmetric kernel: ``V_+ sqrt(L_+)``.

    A dot-product learner can only express a positive semi-definite kernel; this is the closest one to
    the PMI (in Frobenius norm), restricted to its ``dim`` largest eigenvalues if given. Use it as the
    "PMI representation" in ``metrics.mutual_knn`` and ``metrics.cka``. Shape (N, r).
    """
    (m,) = _check_kernels(pmi_matrix)
    if not np.allclose(m, m.T):
        raise ValueError("the kernel must be symmetric (average it with its transpose)")
    w, v = np.linalg.eigh((m + m.T) / 2)
    order = np.argsort(w)[::-1]
    w, v = w[order], v[:, order]
    keep = w > 1e-9 * max(abs(w).max(), 1e-300)
    if dim is not None:
        keep &= np.arange(len(w)) < int(dim)
    return v[:, keep] * np.sqrt(w[keep])


def negative_share(kernel_matrix) -> float:
    """Share of a symmetric kernel's squared eigenvalue mass that is negative (what no dot product fits)."""
    (m,) = _check_kernels(kernel_matrix)
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float((w[w < 0] ** 2).sum() / (w ** 2).sum())


def fit_bilinear(joint, steps: int = 3000, lr: float = 0.05, seed: int = 0) -> np.ndarray:
    """A linear-softmax learner trained on the exact law: logits ``S = U V^T`` of one-hot inputs.

    Minimises the population InfoNCE with negatives drawn from the marginals, in both directions:
    ``- sum_ab P(a,b) [log q(b|a) + log q(a|b)] / 2`` with ``q(b|a) = p(b) e^{S_ab} / sum_b' p(b') e^{S_ab'}``.
    Its optimum is ``S = PMI + c`` (one constant) when ``U, V`` have full rank (Oord et al. 2018;
    Huh et al. 2024). Returns the learned ``S``, shape (n_a, n_b).
    """
    p = torch.as_tensor(_check_table(joint, "joint"), dtype=torch.float64)
    p = p / p.sum()
    pa, pb = p.sum(1), p.sum(0)
    g = torch.Generator().manual_seed(seed)
    u = (0.1 * torch.randn(p.shape[0], min(p.shape), generator=g, dtype=torch.float64)).requires_grad_()
    v = (0.1 * torch.randn(p.shape[1], min(p.shape), generator=g, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.Adam([u, v], lr=lr)
    for _ in range(int(steps)):
        s = u @ v.T
        fwd = torch.log_softmax(s + pb.log()[None, :], dim=1)
        bwd = torch.log_softmax(s + pa.log()[:, None], dim=0)
        loss = -(p * (fwd + bwd)).sum() / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (u @ v.T).detach().numpy()
