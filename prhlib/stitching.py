"""Model stitching and relative representations.

Similarity scores are indirect. Stitching is the functional test (Lenc & Vedaldi 2015; Bansal,
Nakkiran & Barak 2021): keep network A up to a cut, keep network B after a cut, and put a small
trainable *stitching layer* between them. If a stitch that only re-mixes channels lets B's top finish
the job on A's features, the two representations carry the same information in an (almost) linearly
related form.

Vocabulary used throughout:

sender / bottom
    network A up to and including the child named ``cut_a`` (frozen).
receiver / top
    network B after the child named ``cut_b`` (frozen). Its last child is the task head.
stitch
    feature maps ``(C_a, H, W) -> (C_b, H, W)``: BatchNorm -> 1x1 convolution -> BatchNorm;
    vectors ``d_a -> d_b``: one linear map.
stitching penalty
    accuracy of the stitched network minus the receiving network's own accuracy (<= 0 is usual;
    close to 0 means "B's top can use A's bottom").

Networks are cut at *named children* of an ``nn.Sequential``. :func:`as_sequential` exposes a timm
EfficientNet (or a ``prhlib.models`` encoder wrapping one) as such a sequence:
``stem, stage1, ..., stage7, head, pool, classifier`` (the first 9 names are the layers of
``prhlib.models`` / ``prhlib.features`` for the same network).

Relative representations (Moschella et al. 2023) describe a sample by its cosine similarities to a
fixed set of *anchor* samples; :func:`zero_shot_swap` fits a classifier on one encoder and evaluates it
on another with no training at all.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._checks import as_matrix, check_int
from ._threads import limited

__all__ = [
    "as_sequential",
    "layer_names",
    "split",
    "feature_shape",
    "activations",
    "position_samples",
    "make_stitch",
    "ConvStitch",
    "LinearStitch",
    "StitchedModel",
    "stitch",
    "identity_stitch",
    "random_bottom",
    "train_stitch",
    "fit_least_squares",
    "fit_linear_map",
    "predict",
    "accuracy",
    "task_accuracies",
    "predicted_labels",
    "agreement",
    "stitching_penalty",
    "evaluate_stitch",
    "compare_cuts",
    "METHODS",
    "StitchResult",
    "relative_representation",
    "zero_shot_swap",
    "swap_table",
]


# ----------------------------------------------------------------------------------------------
# Cutting networks
# ----------------------------------------------------------------------------------------------
def _is_timm_efficientnet(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2",
                                            "global_pool", "classifier"))


def as_sequential(model) -> nn.Sequential:
    """Expose a network as an ``nn.Sequential`` whose named children are its cut points.

    Parameters
    ----------
    model : nn.Sequential, timm EfficientNet, or an object with a ``.module`` attribute
        An ``nn.Sequential`` is returned as it is. A timm ``EfficientNet`` (e.g.
        ``tf_efficientnet_lite0``) becomes ``stem, stage1 .. stage{S}, head, pool, classifier``
        where ``stage{i}`` is ``model.blocks[i - 1]`` and ``head`` is ``conv_head`` + ``bn2`` (the
        layer names of :class:`prhlib.models.TimmCNN`, plus the pooling and the classifier). The new sequence *shares* the modules
        of ``model`` (no copy) and computes exactly ``model(x)`` in eval mode.

    Raises
    ------
    ValueError
        for any other kind of module (say which one, and what is supported).
    """
    if hasattr(model, "module") and isinstance(getattr(model, "module"), nn.Module) \
            and not isinstance(model, nn.Module):
        model = model.module
    if isinstance(model, nn.Sequential):
        return model
    if isinstance(model, nn.Module) and _is_timm_efficientnet(model):
        if getattr(model, "drop_rate", 0.0) and model.training:
            warnings.warn("EfficientNet drop_rate > 0: the sequential view skips head dropout "
                          "(identical in eval mode)", stacklevel=2)
        parts: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(model.conv_stem, model.bn1))]
        parts += [(f"stage{i + 1}", block) for i, block in enumerate(model.blocks)]
        parts += [("head", nn.Sequential(model.conv_head, model.bn2)),
                  ("pool", model.global_pool),
                  ("classifier", model.classifier)]
        seq = nn.Sequential(OrderedDict(parts))
        shared = {id(m) for m in model.modules()}
        for m in seq.modules():  # new containers take the model's mode; shared layers keep theirs
            if id(m) not in shared:
                m.training = model.training
        return seq
    raise ValueError(
        f"cannot cut a {type(model).__name__}: pass an nn.Sequential with named children, a timm "
        "EfficientNet, or a prhlib.models encoder whose .module is one of these"
    )


def layer_names(model) -> list[str]:
    """Names of the children of :func:`as_sequential` ``(model)``: the places where it can be cut."""
    return [name for name, _ in as_sequential(model).named_children()]


def split(model, cut: str) -> tuple[nn.Sequential, nn.Sequential]:
    """Cut ``model`` after the child named ``cut``.

    Returns
    -------
    bottom, top : nn.Sequential
        ``bottom`` holds the children up to and including ``cut``; ``top`` the rest.
        ``top(bottom(x)) == model(x)``. Both share modules with ``model``.

    Raises
    ------
    ValueError
        if ``cut`` is not a child name, or is the last child (the top would be empty).
    """
    seq = as_sequential(model)
    names = [name for name, _ in seq.named_children()]
    if cut not in names:
        raise ValueError(f"no layer named {cut!r} to cut at; the layers are {names}")
    i = names.index(cut)
    if i == len(names) - 1:
        raise ValueError(f"cannot cut after the last layer {cut!r}: the top would be empty; "
                         f"cut at one of {names[:-1]}")
    children = list(seq.named_children())
    bottom = nn.Sequential(OrderedDict(children[: i + 1]))
    top = nn.Sequential(OrderedDict(children[i + 1:]))
    bottom.training = top.training = seq.training  # the containers only: never flip shared children
    return bottom, top


@contextmanager
def _eval_mode(module: nn.Module):
    """Run ``module`` in eval mode, then restore the train/eval flag of every submodule exactly."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


def _device(*modules: nn.Module) -> torch.device:
    """Where the first of ``modules`` that has a parameter or buffer lives (CPU if none has one).

    A module without tensors (an identity bottom or stitch) defers to the next one, e.g. the top.
    """
    for module in modules:
        for t in itertools.chain(module.parameters(), module.buffers()):
            return t.device
    return torch.device("cpu")


@torch.no_grad()
def feature_shape(module: nn.Module, example: torch.Tensor) -> tuple[int, ...]:
    """Shape of ``module(example)`` without the batch axis (the module runs once in eval mode).

    ``example`` is a batch of inputs, e.g. ``x[:2]``; every submodule's train/eval flag is restored.
    """
    with _eval_mode(module):
        out = module(_as_tensor(example, "example").to(_device(module)))
    return tuple(out.shape[1:])


@torch.no_grad()
def activations(model, x, layers, batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Run ``model`` once (eval mode) and keep the unpooled outputs of the named children ``layers``.

    One pass serves several cuts: stitches can then be trained and evaluated on cached activations
    (a :class:`StitchedModel` with an ``nn.Identity()`` bottom), which is how the frozen sender is
    paid for only once.

    Parameters
    ----------
    model : network accepted by :func:`as_sequential`
    x : tensor (n, ...)
    layers : list of str
        child names; the pass stops after the last one requested.
    batch_size : int
        inputs per forward pass. Small by default: at 224 pixels an early feature map of a batch
        of 64 is a buffer of ~100 MB, and allocating such buffers layer after layer cost a third
        of a CPU pass in page faults; a batch of 8 is as fast per image without them.

    Returns
    -------
    dict name -> tensor (n, ...)
        on the CPU, whatever device the model runs on.
    """
    seq = as_sequential(model)
    names = [name for name, _ in seq.named_children()]
    layers = [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in layers if name not in names]
    if unknown or not layers:
        raise ValueError(f"unknown layer(s) {unknown or layers}: the layers are {names}")
    x = _as_tensor(x, "x")
    last = max(names.index(name) for name in layers)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    device = _device(seq)
    with _eval_mode(seq):
        for i in range(0, len(x), batch_size):
            h = x[i:i + batch_size].to(device)
            for j, (name, child) in enumerate(seq.named_children()):
                h = child(h)
                if name in out:
                    out[name].append(h.cpu())
                if j == last:
                    break
    return {name: torch.cat(parts) for name, parts in out.items()}


def _standardise_channels(t: torch.Tensor) -> torch.Tensor:
    """Z-score every channel (axis 1) over all images and positions; a constant channel becomes 0."""
    axes = [0] + list(range(2, t.ndim))
    t = t.double()
    mean = t.mean(dim=axes, keepdim=True)
    std = t.std(dim=axes, keepdim=True, unbiased=False)
    return torch.where(std > 0, (t - mean) / torch.where(std > 0, std, 1.0), 0.0)


def position_samples(a, b, per_image: int = 1, standardize: bool = True,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paired rows of two activations as a per-pixel stitch sees them: positions are samples.

    A :class:`ConvStitch` applies one affine map to the channel vector at every pixel, so the
    representation it is asked to translate is the set of channel vectors, one per (image,
    position), not the image's pooled vector. This draws ``per_image`` positions of every image
    (without replacement, the *same* positions in ``a`` and ``b``) and returns their channel vectors,
    so that a similarity score compares what the stitch sees.

    Parameters
    ----------
    a, b : tensors or arrays, (n, C_a, H, W) and (n, C_b, H, W), or (n, d_a) and (n, d_b)
        two networks' activations on the same n inputs, at the same spatial size (as
        :func:`make_stitch` requires). Vectors (a pooled cut) are returned as they are, after the
        optional standardisation: there each image is one sample already.
    per_image : int
        positions drawn per image, ``1 <= per_image <= H * W``. With 1, the rows come from
        different images, so a permutation null over rows (:func:`prhlib.metrics.calibrate`) stays
        valid; several positions of one image are not exchangeable with other images' positions.
    standardize : bool
        z-score every channel over all images and positions first (a channel that never varies
        becomes 0), as the stitch's input BatchNorm does.
    seed : int
        draws the positions.

    Returns
    -------
    rows_a, rows_b : float64 arrays (n * per_image, C_a) and (n * per_image, C_b)
        row ``i * per_image + j`` is position j of image i in both.

    Raises
    ------
    ValueError
        on NaN/inf, different numbers of inputs, different spatial sizes, ranks other than 2 and 4,
        or ``per_image`` outside ``[1, H * W]``.
    """
    a, b = _as_tensor(a, "a"), _as_tensor(b, "b")
    if a.ndim != b.ndim or a.ndim not in (2, 4):
        raise ValueError(f"a and b must both be feature maps (n, C, H, W) or both vectors (n, d), got "
                         f"shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) != len(b):
        raise ValueError(f"a and b describe different numbers of inputs: {len(a)} vs {len(b)}")
    if a.ndim == 4 and a.shape[2:] != b.shape[2:]:
        raise ValueError(f"a and b have different spatial sizes, {tuple(a.shape[2:])} vs "
                         f"{tuple(b.shape[2:])}: a per-pixel stitch needs positions that correspond")
    if standardize:
        a, b = _standardise_channels(a), _standardise_channels(b)
    if a.ndim == 2:
        return a.double().numpy(), b.double().numpy()
    n, n_pos = len(a), a.shape[2] * a.shape[3]
    per_image = check_int(per_image, "per_image", minimum=1, maximum=n_pos)
    rng = np.random.default_rng(seed)
    pos = np.stack([rng.choice(n_pos, size=int(per_image), replace=False) for _ in range(n)])
    rows = torch.as_tensor(np.repeat(np.arange(n), per_image))
    pos = torch.as_tensor(pos.reshape(-1))

    def pick(t: torch.Tensor) -> np.ndarray:
        flat = t.reshape(n, t.shape[1], n_pos)       # (n, C, H*W)
        return flat[rows, :, pos].double().numpy()  # (n * per_image, C)

    return pick(a), pick(b)


# ----------------------------------------------------------------------------------------------
# Stitching layers
# ----------------------------------------------------------------------------------------------
class ConvStitch(nn.Module):
    """BatchNorm -> 1x1 convolution -> BatchNorm: ``(n, C_a, H, W) -> (n, C_b, H, W)``.

    The 1x1 convolution is a ``C_b x C_a`` matrix applied at every pixel: the stitch may re-mix and
    re-scale channels but cannot move information across space.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=1, bias=True)
        self.bn_out = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_out(self.conv(self.bn_in(x)))


class LinearStitch(nn.Module):
    """One affine map for vectors: ``(n, d_a) -> (n, d_b)``, ``x W^T + b``."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def make_stitch(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> nn.Module:
    """The stitching layer that maps activations of shape ``shape_a`` to ``shape_b`` (no batch axis).

    ``(C_a, H, W) -> (C_b, H, W)``: :class:`ConvStitch`; ``(d_a,) -> (d_b,)``: :class:`LinearStitch`.

    Raises
    ------
    ValueError
        if one side is a feature map and the other a vector, if the spatial sizes differ (a 1x1
        convolution cannot resample; cut at layers of the same resolution or feed inputs of the
        same size), or for any other rank.
    """
    shape_a, shape_b = tuple(int(s) for s in shape_a), tuple(int(s) for s in shape_b)
    if len(shape_a) == 3 and len(shape_b) == 3:
        if shape_a[1:] != shape_b[1:]:
            raise ValueError(
                f"incompatible cut: spatial sizes differ, {shape_a[1:]} (sender) vs {shape_b[1:]} "
                "(receiver); a 1x1-convolution stitch cannot resample. Cut at layers with the same "
                "resolution or feed both networks inputs of the same size")
        return ConvStitch(shape_a[0], shape_b[0])
    if len(shape_a) == 1 and len(shape_b) == 1:
        return LinearStitch(shape_a[0], shape_b[0])
    kind = {1: "vector", 3: "feature map"}
    if len(shape_a) in kind and len(shape_b) in kind:
        raise ValueError(
            f"incompatible cut: cannot stitch a {kind[len(shape_a)]} {shape_a} into a "
            f"{kind[len(shape_b)]} {shape_b}; cut both networks on the same side of their pooling layer")
    raise ValueError(f"incompatible cut: stitching needs (C, H, W) or (d,) activations, "
                     f"got {shape_a} and {shape_b}")


class StitchedModel(nn.Module):
    """``top_b(stitch(bottom_a(x)))`` with ``bottom_a`` and ``top_b`` frozen.

    The frozen parts are private copies (training a stitch never touches the original networks)
    and always stay in eval mode, so their BatchNorm statistics never move; ``.train()`` only
    affects the stitch. The stitch is moved to the device of the top (e.g. a GPU).
    """

    def __init__(self, bottom: nn.Module, stitch_layer: nn.Module, top: nn.Module):
        super().__init__()
        self.bottom = copy.deepcopy(bottom)
        self.top = copy.deepcopy(top)
        self.stitch = stitch_layer.to(_device(self.top))
        for part in (self.bottom, self.top):
            part.requires_grad_(False)
            part.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.bottom.eval()
        self.top.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(self.stitch(self.bottom(x.to(_device(self.bottom, self.top)))))

    def n_trainable(self) -> int:
        """Number of trainable parameters (those of the stitch)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def stitch(model_a, model_b, cut_a: str, cut_b: str | None = None,
           example: torch.Tensor | None = None, example_b: torch.Tensor | None = None,
           stitch_layer: nn.Module | None = None) -> StitchedModel:
    """Stitch ``model_a`` (bottom, up to ``cut_a``) into ``model_b`` (top, after ``cut_b``).

    Parameters
    ----------
    model_a, model_b : networks accepted by :func:`as_sequential`
    cut_a, cut_b : str
        child names; ``cut_b`` defaults to ``cut_a``.
    example : torch.Tensor, shape (n, ...)
        a small batch of inputs to measure the activation shapes at both cuts (needed unless
        ``stitch_layer`` is given). ``example_b`` is the receiver's input if it differs.
    stitch_layer : nn.Module, optional
        use this layer instead of :func:`make_stitch` (e.g. :func:`identity_stitch`).

    Raises
    ------
    ValueError
        at an unknown or final cut, or incompatible activation shapes (see :func:`make_stitch`).
    """
    cut_b = cut_a if cut_b is None else cut_b
    bottom_a, _ = split(model_a, cut_a)
    bottom_b, top_b = split(model_b, cut_b)
    if stitch_layer is None:
        if example is None:
            raise ValueError("pass example= (a small input batch) so the activation shapes can be measured")
        shape_a = feature_shape(bottom_a, example)
        shape_b = feature_shape(bottom_b, example if example_b is None else example_b)
        stitch_layer = make_stitch(shape_a, shape_b)
    return StitchedModel(bottom_a, stitch_layer, top_b)


def identity_stitch(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> nn.Module:
    """The no-training control: pass A's activations to B's top unchanged.

    Raises
    ------
    ValueError
        if the shapes differ (the identity is only defined where shapes allow).
    """
    if tuple(shape_a) != tuple(shape_b):
        raise ValueError(f"identity stitch needs equal activation shapes, got {tuple(shape_a)} "
                         f"and {tuple(shape_b)}")
    return nn.Identity()


def random_bottom(model, seed: int = 0) -> nn.Sequential:
    """A copy of ``model`` (as a sequence) with every parameter and BatchNorm statistic re-initialised.

    The control of Bansal et al.: stitching from a randomly initialised bottom shows how much of
    the stitched accuracy the stitch and the receiver's top achieve on their own.
    """
    seq = copy.deepcopy(as_sequential(model))
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        n_reset = 0
        for module in seq.modules():
            if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
                module.reset_parameters()
                n_reset += 1
    finally:
        torch.random.set_rng_state(gen_state)
    if n_reset == 0:
        raise ValueError("random_bottom: the model has no layer with reset_parameters()")
    return seq.eval()


# ----------------------------------------------------------------------------------------------
# Fitting stitches
# ----------------------------------------------------------------------------------------------
def _as_tensor(x, name: str) -> torch.Tensor:
    """``x`` as a float32 tensor; NaN or inf is an error."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    return t


@torch.no_grad()
def _run(module: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``module(x)`` in eval mode, in batches on the module's device; the result on the CPU."""
    device = _device(module)
    with _eval_mode(module):
        return torch.cat([module(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def _check_xy(x, y, name_y="y") -> tuple[torch.Tensor, torch.Tensor]:
    x = _as_tensor(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (n, ...), got shape {tuple(x.shape)}")
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if len(y) != len(x):
        raise ValueError(f"x and {name_y} have different numbers of rows: {len(x)} vs {len(y)}")
    return x, y


def _slices(task_slices) -> list[slice]:
    """The head's column slices, one per task (``None``: one task owning every column)."""
    if task_slices is None:
        return [slice(None)]
    slices = list(task_slices.values()) if isinstance(task_slices, dict) else list(task_slices)
    if not slices or not all(isinstance(sl, slice) for sl in slices):
        raise ValueError("task_slices must be a non-empty dict (or list) of slices of the head's outputs")
    return slices


def _check_labels(y: torch.Tensor, slices: list[slice]) -> torch.Tensor:
    """Labels as ``(n, T)`` long: one column per task."""
    y = y.long()
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != len(slices):
        raise ValueError(f"labels must have shape (n,) for one task or (n, {len(slices)}) for "
                         f"{len(slices)} task slices, got {tuple(y.shape)}")
    return y


def _task_loss(out: torch.Tensor, y: torch.Tensor, slices: list[slice]) -> torch.Tensor:
    """Mean over tasks of the cross-entropy of each task's slice of the logits."""
    return sum(nn.functional.cross_entropy(out[:, sl], y[:, t]) for t, sl in enumerate(slices)) / len(slices)


def _soft_loss(out: torch.Tensor, target_p: list[torch.Tensor], slices: list[slice],
               temperature: float) -> torch.Tensor:
    return sum(nn.functional.kl_div(torch.log_softmax(out[:, sl] / temperature, dim=1), p,
                                    reduction="batchmean")
               for sl, p in zip(slices, target_p)) / len(slices)


def train_stitch(model: StitchedModel, x, y, epochs: int = 10, batch_size: int = 64,
                 lr: float = 1e-2, weight_decay: float = 0.0, seed: int = 0,
                 soft_targets: bool = False, temperature: float = 1.0,
                 task_slices=None) -> list[float]:
    """Train only the stitch of ``model`` on the receiver's task loss.

    The frozen bottom is deterministic, so its activations are computed once; each epoch then runs
    the stitch and the frozen top only.

    Parameters
    ----------
    model : StitchedModel
    x : tensor, shape (n, ...)
        inputs of the sending network.
    y : tensor
        class labels, shape (n,) int -- cross-entropy; or, with ``soft_targets=True``, the
        receiver's logits, shape (n, n_classes) -- KL divergence to its softmax at ``temperature``
        (distillation: useful when there are few labelled images).
    epochs, batch_size, lr, weight_decay : optimisation (Adam), a fixed seed for the batch order.
    task_slices : dict of slices, optional
        for a multi-task head (e.g. ``zoo`` classifiers' ``model.task_slices``): each task's columns
        of the logits. Labels are then ``(n, T)``, one column per task in the same order, and the
        loss is the mean of the tasks' cross-entropies (their KL divergences for soft targets).

    Returns
    -------
    list of float
        the mean training loss of every epoch.
    """
    x, y = _check_xy(x, y)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    slices = _slices(task_slices)
    params = [p for p in model.stitch.parameters() if p.requires_grad]
    if soft_targets:
        y = _as_tensor(y, "soft targets")
        if y.ndim != 2 or not y.is_floating_point():
            raise ValueError(f"soft targets must be logits of shape (n, n_classes), got {tuple(y.shape)}")
        target_p = [torch.softmax(y[:, sl] / temperature, dim=1) for sl in slices]
    else:
        y = _check_labels(y, slices)
    feats = _run(model.bottom, x, batch_size=max(batch_size, 128))
    if not params:  # e.g. an identity stitch: nothing to train
        return []
    gen = torch.Generator().manual_seed(seed)
    device = _device(model.stitch, model.top)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    history = []
    model.train()
    n = len(x)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                    for m in model.stitch.modules()):
                continue  # BatchNorm cannot normalise a batch of one
            out = model.top(model.stitch(feats[idx].to(device)))
            if soft_targets:
                loss = _soft_loss(out, [p[idx].to(device) for p in target_p], slices, temperature)
            else:
                loss = _task_loss(out, y[idx].to(device), slices)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / n)
    model.eval()
    return history


def _lstsq_affine(a: np.ndarray, b: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``min ||a W + c - b||^2 + ridge ||W||^2`` for ``W (d_a x d_b)`` and ``c (d_b,)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    mean_a, mean_b = a.mean(0), b.mean(0)
    ac, bc = a - mean_a, b - mean_b
    # Normal equations (d_a x d_a): fast for the many rows of a convolutional stitch (every pixel is a
    # row). Without ridge, lstsq on them gives the minimum-norm solution even for dead channels.
    # One thread: products this small ran 10-20x slower on two BLAS threads of a busy 2-core machine.
    with limited(1):
        gram, rhs = ac.T @ ac, ac.T @ bc
        if ridge == 0:
            w = np.linalg.lstsq(gram, rhs, rcond=None)[0]
        else:
            w = np.linalg.solve(gram + ridge * np.eye(a.shape[1]), rhs)
    return w, mean_b - mean_a @ w


def fit_linear_map(x, y, ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares affine map from ``x`` to ``y``: ``y ~ x @ W + c``.

    Parameters
    ----------
    x : array (n, d_x)
    y : array (n, d_y)
    ridge : float
        L2 penalty on ``W`` (0: ordinary least squares, minimum-norm solution).

    Returns
    -------
    W : array (d_x, d_y), c : array (d_y,)
    """
    x, y = _check_matrix(x, "x"), _check_matrix(y, "y")  # 2-D, finite, at least 2 rows
    if len(x) != len(y):
        raise ValueError(f"x and y have different numbers of rows: {len(x)} vs {len(y)}")
    return _lstsq_affine(x, y, ridge)


@torch.no_grad()
def fit_least_squares(model: StitchedModel, x, target_bottom: nn.Module,
                      x_target=None, ridge: float = 0.0, batch_size: int = 128) -> StitchedModel:
    """Fit the stitch of ``model`` directly: make it reproduce the receiver's own activations.

    "Direct matching": with ``a = bottom_a(x)`` and ``b = bottom_b(x)`` (``target_bottom``, the
    receiver cut at the same place), solve the least-squares problem ``stitch(a) ~ b``. For a
    :class:`ConvStitch` every pixel of every image is one row; ``bn_in`` is set to standardise each
    channel (its running statistics become the data's mean and variance), the 1x1 convolution holds
    the least-squares solution, and ``bn_out`` gets the statistics of the convolution's output with
    the affine parameters that undo them. The layer then computes exactly the fitted affine map in
    eval mode, and nearly the same map in train mode (batch statistics close to the data's), so a
    least-squares fit is also a good starting point for :func:`train_stitch`. If ``b`` is an affine
    function of ``a`` the fit is exact.

    Parameters
    ----------
    model : StitchedModel with a ConvStitch or LinearStitch
    x : inputs of the sender, shape (n, ...); ``x_target`` those of the receiver if different.
    target_bottom : nn.Module
        the receiving network up to its cut (``split(model_b, cut_b)[0]``).
    ridge : float
        L2 penalty (0 = ordinary least squares).

    Returns
    -------
    the same ``model``, fitted in place, in eval mode.
    """
    x = _as_tensor(x, "x")
    xt = x if x_target is None else _as_tensor(x_target, "x_target")
    if len(xt) != len(x):
        raise ValueError(f"x and x_target have different numbers of rows: {len(x)} vs {len(xt)}")
    a = _run(model.bottom, x, batch_size)
    b = _run(target_bottom, xt, batch_size)
    layer = model.stitch
    if isinstance(layer, ConvStitch):
        if a.ndim != 4 or b.ndim != 4 or a.shape[2:] != b.shape[2:]:
            raise ValueError(f"incompatible activations for a ConvStitch: {tuple(a.shape)} and {tuple(b.shape)}")
        a2 = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).double()
        b2 = b.permute(0, 2, 3, 1).reshape(-1, b.shape[1]).double()
        mean, var = a2.mean(0), a2.var(0, unbiased=False)
        bn = layer.bn_in
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        z = (a2 - mean) / torch.sqrt(var + bn.eps)  # exactly what bn_in computes in eval mode
        w, c = _lstsq_affine(z.numpy(), b2.numpy(), ridge)
        layer.conv.weight.copy_(torch.from_numpy(w.T).float()[:, :, None, None])
        layer.conv.bias.copy_(torch.from_numpy(c).float())
        u = z @ torch.from_numpy(w) + torch.from_numpy(c)  # what the convolution outputs
        u_mean, u_var = u.mean(0), u.var(0, unbiased=False)
        out = layer.bn_out
        out.running_mean.copy_(u_mean)
        out.running_var.copy_(u_var)
        out.weight.copy_(torch.sqrt(u_var + out.eps))  # (u - mean) / sqrt(var + eps) * sqrt(var + eps) + mean = u
        out.bias.copy_(u_mean)
    elif isinstance(layer, LinearStitch):
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"incompatible activations for a LinearStitch: {tuple(a.shape)} and {tuple(b.shape)}")
        w, c = _lstsq_affine(a.double().numpy(), b.double().numpy(), ridge)
        layer.linear.weight.copy_(torch.from_numpy(w.T).float())
        layer.linear.bias.copy_(torch.from_numpy(c).float())
    else:
        raise ValueError(f"fit_least_squares supports ConvStitch and LinearStitch, got {type(layer).__name__}")
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def predict(model: nn.Module, x, batch_size: int = 128) -> torch.Tensor:
    """Outputs (logits) of ``model`` on ``x`` in eval mode, in batches, without gradients."""
    x = _as_tensor(x, "x")
    return _run(model, x, batch_size)


def task_accuracies(model: nn.Module, x, y, task_slices=None, batch_size: int = 128) -> np.ndarray:
    """Top-1 accuracy of every task: ``(T,)``. Labels ``y`` are ``(n,)`` or ``(n, T)``."""
    x, y = _check_xy(x, y)
    slices = _slices(task_slices)
    y = _check_labels(y, slices)
    return _output_accuracies(predict(model, x, batch_size), y, slices)


def _output_accuracies(out: torch.Tensor, y: torch.Tensor, slices: list[slice]) -> np.ndarray:
    """Top-1 accuracy of every task of outputs ``out`` against labels ``y`` ``(n, T)``."""
    return np.array([float((out[:, sl].argmax(1) == y[:, t]).float().mean()) for t, sl in enumerate(slices)])


def accuracy(model: nn.Module, x, y, task_slices=None, batch_size: int = 128) -> float:
    """Top-1 accuracy of ``model`` on inputs ``x`` with labels ``y`` (n,) -- the mean over tasks for a
    multi-task head (``task_slices``, labels ``(n, T)``)."""
    return float(task_accuracies(model, x, y, task_slices, batch_size).mean())


def predicted_labels(model: nn.Module, x, task_slices=None, batch_size: int = 128) -> torch.Tensor:
    """The model's own top-1 class of every task: ``(n, T)`` long (``T = 1`` without ``task_slices``)."""
    return _output_labels(predict(model, x, batch_size), _slices(task_slices))


def _output_labels(out: torch.Tensor, slices: list[slice]) -> torch.Tensor:
    """Top-1 class of every task of outputs ``out``: ``(n, T)`` long."""
    return torch.stack([out[:, sl].argmax(1) for sl in slices], dim=1)


def agreement(model: nn.Module, reference: nn.Module, x, x_reference=None, task_slices=None,
              batch_size: int = 128) -> float:
    """Fraction of inputs on which ``model`` and ``reference`` predict the same top-1 class (mean over
    tasks for a multi-task head)."""
    pa = predicted_labels(model, x, task_slices, batch_size)
    pb = predicted_labels(reference, x if x_reference is None else x_reference, task_slices, batch_size)
    if len(pa) != len(pb):
        raise ValueError(f"x and x_reference have different numbers of rows: {len(pa)} vs {len(pb)}")
    return float((pa == pb).float().mean())


def stitching_penalty(stitched_accuracy: float, receiver_accuracy: float) -> float:
    """Stitched accuracy minus the receiving network's accuracy (Bansal et al. 2021)."""
    for name, v in (("stitched_accuracy", stitched_accuracy), ("receiver_accuracy", receiver_accuracy)):
        if not np.isfinite(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be an accuracy in [0, 1], got {v}")
    return float(stitched_accuracy - receiver_accuracy)


@dataclass
class StitchResult:
    """Accuracy of a stitched network next to its receiver's, and the penalty between them."""

    stitched: float
    receiver: float
    penalty: float


def evaluate_stitch(model: StitchedModel, receiver: nn.Module, x, y=None,
                    x_receiver=None, task_slices=None, batch_size: int = 128) -> StitchResult:
    """Accuracy of ``model`` and of ``receiver`` on ``(x, y)``, and the stitching penalty.

    Without labels (``y=None``) the receiver's own top-1 predictions are the labels: the receiver
    then scores 1 and the stitched score is the *agreement* with it. ``task_slices``: see
    :func:`train_stitch` (accuracies are then means over tasks).
    """
    xr = x if x_receiver is None else x_receiver
    if y is None:
        y = predicted_labels(receiver, xr, task_slices, batch_size)
    acc_s = accuracy(model, x, y, task_slices, batch_size)
    acc_r = accuracy(receiver, xr, y, task_slices, batch_size)
    return StitchResult(acc_s, acc_r, stitching_penalty(acc_s, acc_r))


METHODS = ("lstsq", "task", "lstsq+task", "identity")


def compare_cuts(sender_train: dict, sender_test: dict, receiver_train: dict, receiver_test: dict,
                 receiver, y_train=None, y_test=None, cuts=None, methods=("lstsq", "task", "identity"),
                 soft_targets: bool = False, task_slices=None, epochs: int = 3, lr: float = 1e-2,
                 batch_size: int = 64, ridge: float = 0.0, seed: int = 0) -> list[dict]:
    """Stitch a sender into ``receiver`` at several cuts, from cached activations, by several methods.

    Each stitch is a :class:`StitchedModel` with an identity bottom fed the sender's activations
    (from :func:`activations`) and the receiver's top after the same cut.

    Parameters
    ----------
    sender_train, sender_test : dict cut -> tensor (n, ...)
        the sender's activations on the training and test inputs.
    receiver_train, receiver_test : dict cut -> tensor (n, ...)
        the receiver's activations on the *same* inputs (least-squares targets; the receiver's own
        test score comes from ``receiver_test``).
    receiver : network accepted by :func:`as_sequential`
    y_train : labels ``(n,)`` / ``(n, T)``, or the receiver's logits with ``soft_targets=True``;
        needed by the ``task`` methods.
    y_test : labels, or ``None`` to score agreement with the receiver's own predictions.
    cuts : list of str, default every key of ``sender_test``.
    methods : any of ``"lstsq"`` (direct matching, :func:`fit_least_squares`), ``"task"`` (trained
        on the task loss from a random initialisation, :func:`train_stitch`), ``"lstsq+task"``
        (least squares, then the task loss), ``"identity"`` (no stitch; skipped where shapes differ).
    soft_targets, task_slices, epochs, lr, batch_size, seed : passed to :func:`train_stitch`
        (``batch_size`` is also the batch of every evaluation).
    ridge : passed to :func:`fit_least_squares`.

    Returns
    -------
    list of dict
        one record per (cut, method): ``cut``, ``method``, ``stitched``, ``receiver``, ``penalty``.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: choose from {METHODS}")
    if any(m != "identity" and m != "lstsq" for m in methods) and y_train is None:
        raise ValueError("the 'task' methods need y_train (labels, or the receiver's logits with soft_targets)")
    cuts = list(sender_test) if cuts is None else list(cuts)
    for name, acts in (("sender_train", sender_train), ("sender_test", sender_test),
                       ("receiver_train", receiver_train), ("receiver_test", receiver_test)):
        missing = [c for c in cuts if c not in acts]
        if missing:
            raise ValueError(f"{name} has no activations for cut(s) {missing}")
    records = []
    for cut in cuts:
        a_tr, a_te = _as_tensor(sender_train[cut], "sender_train"), _as_tensor(sender_test[cut], "sender_test")
        b_tr, b_te = receiver_train[cut], receiver_test[cut]
        if len(a_tr) != len(b_tr) or len(a_te) != len(b_te):
            raise ValueError(f"cut {cut!r}: sender and receiver activations describe different numbers of inputs")
        _, top = split(receiver, cut)
        receiver_top = StitchedModel(nn.Identity(), nn.Identity(), top)
        slices = _slices(task_slices)
        out_receiver = predict(receiver_top, b_te, batch_size)  # one pass: its labels and its score
        labels = _output_labels(out_receiver, slices) if y_test is None else y_test
        _, y_checked = _check_xy(b_te, labels, "y_test")
        acc_receiver = float(_output_accuracies(out_receiver, _check_labels(y_checked, slices), slices).mean())
        for method in methods:
            if method == "identity":
                if tuple(a_te.shape[1:]) != tuple(b_te.shape[1:]):
                    continue
                layer = identity_stitch(a_te.shape[1:], b_te.shape[1:])
            else:
                with torch.random.fork_rng(devices=[]):  # a seeded initialisation, global RNG untouched
                    torch.manual_seed(seed)
                    layer = make_stitch(a_te.shape[1:], b_te.shape[1:])
            model = StitchedModel(nn.Identity(), layer, top)
            if method in ("lstsq", "lstsq+task"):
                fit_least_squares(model, a_tr, nn.Identity(), x_target=b_tr, ridge=ridge)
            if method in ("task", "lstsq+task"):
                train_stitch(model, a_tr, y_train, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             soft_targets=soft_targets, task_slices=task_slices)
            acc = accuracy(model, a_te, labels, task_slices, batch_size)
            records.append({"cut": cut, "method": method, "stitched": acc, "receiver": acc_receiver,
                            "penalty": stitching_penalty(acc, acc_receiver)})
    return records


# ----------------------------------------------------------------------------------------------
# Relative representations and zero-shot encoder swaps
# ----------------------------------------------------------------------------------------------
def _check_matrix(x, name: str) -> np.ndarray:
    """``x`` validated by :func:`prhlib._checks.as_matrix`, as a float64 array (n, d)."""
    return as_matrix(x, name).detach().cpu().double().numpy()


def relative_representation(x, anchors, center: bool = False) -> np.ndarray:
    """Cosine similarity of every row of ``x`` to every anchor (Moschella et al. 2023).

    Parameters
    ----------
    x : array (n, d)
    anchors : array (m, d)
        the *same* anchor samples embedded by the same encoder as ``x``.
    center : bool
        subtract the anchors' mean from ``x`` and from the anchors first. The cosine is invariant to
        rotations, reflections and rescaling of the encoder's space; centring adds invariance to a
        translation (many encoders put every embedding in one narrow cone, which squeezes all
        cosines towards 1 by different amounts for different encoders).

    Returns
    -------
    array (n, m)
        ``r[i, j] = <x_i, a_j> / (||x_i|| ||a_j||)`` (after centring if asked).

    Raises
    ------
    ValueError
        on mismatched widths, NaN/inf, or a zero row (its cosine is undefined).
    """
    x, anchors = _check_matrix(x, "x"), _check_matrix(anchors, "anchors")
    if x.shape[1] != anchors.shape[1]:
        raise ValueError(f"x and anchors have different widths: {x.shape[1]} vs {anchors.shape[1]} "
                         "(embed the anchors with the same encoder as x)")
    if center:
        mean = anchors.mean(axis=0)
        x, anchors = x - mean, anchors - mean
    nx, na = np.linalg.norm(x, axis=1), np.linalg.norm(anchors, axis=1)
    if (nx == 0).any() or (na == 0).any():
        raise ValueError("a row of x or anchors is all zeros" + (" after centring" if center else "")
                         + ": its cosine similarity is undefined")
    return (x / nx[:, None]) @ (anchors / na[:, None]).T


def zero_shot_swap(train_a, y_train, test_b, y_test, anchors_a=None, anchors_b=None,
                   classifier=None, center: bool = False) -> float:
    """Fit a classifier on encoder A's features, test it on encoder B's features, no retraining.

    Parameters
    ----------
    train_a : array (n_train, d_a)
        encoder A's embeddings of the training samples.
    y_train : array (n_train,)
    test_b : array (n_test, d_b)
        encoder B's embeddings of the test samples (B may equal A: the un-swapped baseline).
    y_test : array (n_test,)
    anchors_a, anchors_b : arrays (m, d_a) and (m, d_b), optional
        the same anchor samples embedded by A and by B. Given: both sides are mapped to
        :func:`relative_representation` first (the relative swap). Omitted: absolute features are
        used as they are, which needs ``d_a == d_b``.
    classifier : scikit-learn estimator, optional
        default ``LogisticRegression(max_iter=2000)``; it is cloned, never modified.
    center : bool
        centre on the anchors' mean before the cosine (see :func:`relative_representation`).

    Returns
    -------
    float
        accuracy on the test samples.
    """
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression

    train_a, test_b = _check_matrix(train_a, "train_a"), _check_matrix(test_b, "test_b")
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if len(y_train) != len(train_a):
        raise ValueError(f"train_a and y_train have different numbers of rows: {len(train_a)} vs {len(y_train)}")
    if len(y_test) != len(test_b):
        raise ValueError(f"test_b and y_test have different numbers of rows: {len(test_b)} vs {len(y_test)}")
    if (anchors_a is None) != (anchors_b is None):
        raise ValueError("pass both anchors_a and anchors_b (relative swap) or neither (absolute swap)")
    if anchors_a is not None:
        anchors_a, anchors_b = _check_matrix(anchors_a, "anchors_a"), _check_matrix(anchors_b, "anchors_b")
        if len(anchors_a) != len(anchors_b):
            raise ValueError(f"anchors_a and anchors_b must be the same samples: {len(anchors_a)} vs "
                             f"{len(anchors_b)} rows")
        train_a = relative_representation(train_a, anchors_a, center=center)
        test_b = relative_representation(test_b, anchors_b, center=center)
    elif train_a.shape[1] != test_b.shape[1]:
        raise ValueError(f"absolute swap needs equal widths, got {train_a.shape[1]} and {test_b.shape[1]}; "
                         "pass anchors for a relative swap")
    clf = clone(classifier) if classifier is not None else LogisticRegression(max_iter=2000)
    with limited(1):  # a small fit: two BLAS threads made it 5-50x slower on a busy 2-core machine
        clf.fit(train_a, y_train)
        return float((clf.predict(test_b) == y_test).mean())


def swap_table(embeddings, labels, train_idx, test_idx, anchor_idx=None, center: bool = False,
               classifier=None):
    """:func:`zero_shot_swap` for every ordered pair of encoders, each classifier fitted only once.

    Parameters
    ----------
    embeddings : mapping name -> array (n, d_name)
        every encoder's embeddings of the same n samples.
    labels : array (n,)
    train_idx, test_idx : integer arrays
        rows that train the classifiers and rows they are tested on.
    anchor_idx : integer array, optional
        anchor rows: given, every encoder is mapped to :func:`relative_representation` on its own
        embeddings of these rows (the relative swap); omitted, absolute features are used and pairs of
        encoders with different widths get NaN (no absolute swap is defined).
    center : bool
        centre on the anchors' mean (relative swap only).
    classifier : scikit-learn estimator, optional
        default ``LogisticRegression(max_iter=2000)``; cloned for every encoder.

    Returns
    -------
    pandas.DataFrame
        accuracy, rows: the encoder the classifier was trained on; columns: the encoder it is tested on.
        Cell (a, b) equals ``zero_shot_swap`` on the same rows.
    """
    import pandas as pd
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression

    names = list(embeddings)
    if not names:
        raise ValueError("embeddings is empty: pass at least one encoder")
    emb = {name: _check_matrix(embeddings[name], f"embeddings[{name!r}]") for name in names}
    labels = np.asarray(labels)
    sizes = {len(x) for x in emb.values()} | {len(labels)}
    if len(sizes) != 1:
        raise ValueError(f"every encoder and labels must describe the same samples, got row counts "
                         f"{ {name: len(x) for name, x in emb.items()} } and {len(labels)} labels")
    train_idx, test_idx = np.asarray(train_idx), np.asarray(test_idx)
    if anchor_idx is not None:
        anchor_idx = np.asarray(anchor_idx)
        train = {n: relative_representation(x[train_idx], x[anchor_idx], center=center) for n, x in emb.items()}
        test = {n: relative_representation(x[test_idx], x[anchor_idx], center=center) for n, x in emb.items()}
    else:
        train = {n: x[train_idx] for n, x in emb.items()}
        test = {n: x[test_idx] for n, x in emb.items()}
    table = pd.DataFrame(np.nan, index=names, columns=names, dtype=float)
    for fit_on in names:
        clf = clone(classifier) if classifier is not None else LogisticRegression(max_iter=2000)
        with limited(1):  # as in zero_shot_swap (and the same numbers)
            clf.fit(train[fit_on], labels[train_idx])
            for test_on in names:
                if test[test_on].shape[1] == train[fit_on].shape[1]:
                    table.loc[fit_on, test_on] = float((clf.predict(test[test_on]) == labels[test_idx]).mean())
    return table
