"""A zoo of small models for the toy world (:mod:`prhlib.world`), their training loops and a disk cache.

Every model is a :class:`torch.nn.Sequential` with **named children**, so it can be cut anywhere:

* image: ``mlp`` (stem, block1.., head), ``cnn`` (stem, block1.., pool, head), ``vit``
  (stem = patches + positions, block1.. = transformer blocks, pool, head);
* text: ``bow`` (bag of words + MLP: stem, block1.., head), ``gru`` (embed, block1.. = GRU layers,
  pool = last step, head), ``transformer`` (embed, block1.., pool, head).

The **last child is always the task head**; the representation is everything before it
(``model[:-1]``). Every hidden child of one model has the same width, so :func:`embed` returns one
``n x L x d`` array (one entry per child, feature maps and token sequences average-pooled).

Objectives: ``classify`` (attributes of the scene; several tasks share one head whose logits are
concatenated, ``model.task_slices[task]`` is each task's slice), ``clip`` (image--text contrastive
with open_clip's ``ClipLoss``; the image model is returned, the text tower is ``model.partner``),
``simclr`` (contrast two augmentations of an image, or two paraphrases of a caption) and
``autoencode`` (reconstruct the image, or the caption's bag of words).

:func:`train` caches each trained model on disk, keyed by a hash of its :class:`TrainConfig` and the
prhlib version: a second call loads instead of training.

Examples
--------
>>> from prhlib import zoo
>>> model, metrics = zoo.train(zoo.TrainConfig(arch="cnn", width=16, tasks=("shape",)))  # doctest: +SKIP
>>> zoo.embed(model, world.sample(100, seed=5)).shape  # doctest: +SKIP
(100, 4, 16)
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import __version__, config as _config, world
from ._checks import check_int, check_seed, reject_unknown
from ._io import atomic_write
from ._threads import limited
from ._train import descend

IMAGE_ARCHS = ("mlp", "cnn", "vit")
TEXT_ARCHS = ("bow", "gru", "transformer")
OBJECTIVES = ("classify", "clip", "simclr", "autoencode")
#: Seed of the held-out world samples used for task accuracy and linear probes (never trained on).
EVAL_SEED = 90_001
PROBE_SEED = 90_002
PAD, UNK = "<pad>", "<unk>"
#: Version of the architectures and training loops: bump it whenever either changes, so cached
#: checkpoints of the old recipe are retrained rather than loaded.
RECIPE = 2


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a trained model (and nothing else: it is the cache key).

    Parameters
    ----------
    arch : str
        ``mlp``, ``cnn``, ``vit`` (images) or ``bow``, ``gru``, ``transformer`` (captions).
    width : int
        Hidden width: channels (cnn), units (mlp, bow), embedding size (vit, gru, transformer).
    depth : int
        Number of hidden blocks after the stem.
    objective : str
        ``classify``, ``clip``, ``simclr`` or ``autoencode``.
    tasks : tuple of str
        Attributes to classify (``classify`` only), from :data:`prhlib.world.TASKS`.
    n_train, epochs, batch_size, lr : training data size and schedule (Adam, linear decay to 0).
    seed : int
        Initialisation and batch order.
    data_seed : int
        Seed of the training world sample.
    world : dict or tuple of pairs
        Options for :func:`prhlib.world.sample`, e.g. ``{"text_drop": ("color",)}``.
    text_arch, text_width : the text tower of a ``clip`` model.
    embed_dim : int
        Output size of the contrastive projection head.
    max_len : int
        Caption length in tokens for ``gru``/``transformer`` (left-padded).
    """

    arch: str = "cnn"
    width: int = 32
    depth: int = 3
    objective: str = "classify"
    tasks: tuple = ("shape", "color", "size", "x", "y")
    n_train: int = 2000
    epochs: int = 8
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    data_seed: int = 1
    world: tuple = ()
    text_arch: str = "bow"
    text_width: int = 64
    embed_dim: int = 32
    max_len: int = 24

    def __post_init__(self):
        w = self.world
        if isinstance(w, dict):
            w = tuple(sorted(w.items()))
        w = tuple((str(k), tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in w)
        object.__setattr__(self, "world", tuple(sorted(w)))
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        _validate_config(self)

    @property
    def modality(self) -> str:
        return "image" if self.arch in IMAGE_ARCHS else "text"

    @property
    def world_options(self) -> dict:
        return {k: v for k, v in self.world}

    def key(self) -> str:
        """Cache key: hash of every field, the prhlib version, :data:`RECIPE` and the world's
        definition (default options, palette, shapes, sizes), so that a change to any of them
        retrains instead of loading a stale model."""
        payload = json.dumps({"config": dataclasses.asdict(self), "prhlib": __version__, "recipe": RECIPE,
                              "world": [world.DEFAULT_OPTIONS, world.PALETTE, world.SHAPES, world.SIZE_RANGE]},
                             sort_keys=True, default=list)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` (field names of :class:`TrainConfig`; another name is a ``ValueError``)."""
        reject_unknown(changes, "TrainConfig.replace", _fields())
        return dataclasses.replace(self, **changes)


def _fields() -> tuple[str, ...]:
    """The field names of :class:`TrainConfig` (the options :func:`grid` and ``replace`` accept)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig))


def _validate_config(c: TrainConfig) -> None:
    if c.arch not in IMAGE_ARCHS + TEXT_ARCHS:
        raise ValueError(f"unknown arch {c.arch!r}: choose from {IMAGE_ARCHS + TEXT_ARCHS}")
    if c.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {c.objective!r}: choose from {OBJECTIVES}")
    for name in ("width", "depth", "n_train", "epochs", "batch_size", "embed_dim", "max_len", "text_width"):
        check_int(getattr(c, name), name, minimum=1)
    for name in ("seed", "data_seed"):
        check_seed(getattr(c, name), name)
    if isinstance(c.lr, bool) or not isinstance(c.lr, (int, float)) or not (math.isfinite(c.lr) and c.lr > 0):
        raise ValueError(f"lr must be a finite positive number, got {c.lr!r}")
    if c.objective == "classify":
        if not c.tasks:
            raise ValueError("objective 'classify' needs at least one task")
        bad = [t for t in c.tasks if t not in world.TASKS]
        if bad:
            raise ValueError(f"unknown task(s) {bad}: choose from {world.TASKS}")
        if len(set(c.tasks)) != len(c.tasks):
            raise ValueError(f"tasks repeat: {c.tasks}")
    if c.objective == "clip":
        if c.modality != "image":
            raise ValueError("objective 'clip' takes an image arch; set its text tower with text_arch=")
        if c.text_arch not in TEXT_ARCHS:
            raise ValueError(f"text_arch must be one of {TEXT_ARCHS}, got {c.text_arch!r}")
    if c.arch == "vit" and c.width % 8:
        raise ValueError(f"vit width must be a multiple of 8 (heads of 8 dims), got {c.width}")
    if c.arch == "transformer" and c.width % 8:
        raise ValueError(f"transformer width must be a multiple of 8, got {c.width}")
    if c.batch_size > c.n_train:
        raise ValueError(f"batch_size {c.batch_size} exceeds n_train {c.n_train}")
    world.validate_options(dict(c.world))


def as_config(cfg) -> TrainConfig:
    """A :class:`TrainConfig` from a ``TrainConfig`` or a dict of its fields."""
    if isinstance(cfg, TrainConfig):
        return cfg
    if isinstance(cfg, dict):
        reject_unknown(cfg, "TrainConfig", _fields())
        return TrainConfig(**cfg)
    raise ValueError(f"config must be a TrainConfig or a dict, got {type(cfg).__name__}")


def grid(base: TrainConfig | dict | None = None, **axes) -> list[TrainConfig]:
    """Every combination of ``axes`` applied to ``base``: ``grid(base, width=[8, 16], seed=[0, 1])``.

    ``axes`` are field names of :class:`TrainConfig`, each with a list of values; another name is a
    ``ValueError`` (listing the valid ones).
    """
    reject_unknown(axes, "zoo.grid", _fields())
    base = as_config(base or {})
    names = list(axes)
    return [base.replace(**dict(zip(names, combo))) for combo in itertools.product(*(axes[n] for n in names))]


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
class AddCoords(nn.Module):
    """Append two channels holding the pixel's x and y in [-1, 1] (CoordConv): lets a
    translation-equivariant CNN with global pooling still report *where* an object is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, xs, ys], dim=1)


class GlobalPool(nn.Module):
    """Pool over spatial positions (``n x c x h x w``) or tokens (``n x T x d``) -> ``n x d``:
    ``mode="max"`` (detects a feature anywhere: the CNNs) or ``"mean"`` (the transformers),
    optionally followed by a LayerNorm."""

    def __init__(self, mode: str = "mean", norm_dim: int | None = None):
        super().__init__()
        if mode not in ("mean", "max"):
            raise ValueError(f"mode must be 'mean' or 'max', got {mode!r}")
        self.mode = mode
        self.norm = nn.LayerNorm(norm_dim) if norm_dim else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (2, 3) if x.dim() == 4 else (1,)
        x = x.amax(dim=dims) if self.mode == "max" else x.mean(dim=dims)
        return self.norm(x)


class PatchEmbed(nn.Module):
    """Cut an image into ``patch x patch`` patches, embed each linearly, add learned positions."""

    def __init__(self, image_size: int, patch: int, dim: int):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch}")
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, (image_size // patch) ** 2, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2) + self.pos


class TokenEmbed(nn.Module):
    """Token embedding plus (optionally) a learned position embedding: ``n x T`` ids -> ``n x T x d``."""

    def __init__(self, vocab: int, dim: int, max_len: int | None):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02) if max_len else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids)
        return x + self.pos[:, : x.shape[1]] if self.pos is not None else x


class GRUBlock(nn.Module):
    """One GRU layer returning its output sequence (``n x T x d``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gru = nn.GRU(dim, dim, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class LastStep(nn.Module):
    """The last time step of a sequence (captions are left-padded, so it follows the last word)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]


def _transformer_block(dim: int) -> nn.Module:
    return nn.TransformerEncoderLayer(dim, nhead=max(1, dim // 8), dim_feedforward=2 * dim, dropout=0.0,
                                      batch_first=True, norm_first=True)


def head_size(cfg: TrainConfig, modality: str | None = None) -> tuple[int, dict]:
    """Output size of the task head and, for ``classify``, each task's slice of it
    (``modality`` overrides the config's, for the text tower of a clip model)."""
    modality = modality or cfg.modality
    if cfg.objective == "classify":
        mo = int(cfg.world_options.get("max_objects", 1))
        slices, start = {}, 0
        for t in cfg.tasks:
            k = world.n_classes(t, mo)
            slices[t] = slice(start, start + k)
            start += k
        return start, slices
    if cfg.objective in ("clip", "simclr"):
        return cfg.embed_dim, {}
    if modality == "image":
        size = int(cfg.world_options.get("image_size", 32))
        return 3 * size * size, {}
    return len(text_vocabulary()), {}


def _head(cfg: TrainConfig, width: int, modality: str) -> nn.Module:
    out, _ = head_size(cfg, modality)
    if cfg.objective == "simclr":
        return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))
    if cfg.objective == "autoencode" and modality == "image":
        size = int(cfg.world_options.get("image_size", 32))
        return nn.Sequential(nn.Linear(width, 256), nn.ReLU(), nn.Linear(256, out),
                             nn.Unflatten(1, (3, size, size)))
    return nn.Linear(width, out)


class ZooModel(nn.Sequential):
    """A zoo model: an :class:`torch.nn.Sequential` of named children (the last is the head) that
    declares what the zoo needs to know about it.

    Attributes
    ----------
    arch : str
        One of ``IMAGE_ARCHS`` + ``TEXT_ARCHS``.
    modality : str
        ``"image"`` or ``"text"``.
    prh_config : TrainConfig
        The config it was built from (for a clip text tower: the image model's config).
    task_slices : dict
        ``task -> slice`` of the head's logits (``classify``; empty otherwise).
    image_size, max_len : int
        Input size of image models and caption length (tokens) of sequence models.
    logit_scale : float or None
        The learned inverse temperature of a trained ``clip`` model.
    partner : ZooModel or None
        The text tower of a ``clip`` model (read-only; set with :meth:`attach_partner`). It is not
        a registered child, so the head stays the last child and ``state_dict`` holds one tower.
    """

    def __init__(self, layers: list[tuple[str, nn.Module]], *, cfg: TrainConfig, arch: str, modality: str,
                 task_slices: dict, image_size: int, max_len: int):
        super().__init__(OrderedDict(layers))
        self.arch: str = arch
        self.modality: str = modality
        self.prh_config: TrainConfig = cfg
        self.task_slices: dict = task_slices
        self.image_size: int = image_size
        self.max_len: int = max_len
        self.logit_scale: float | None = None
        self._partner: tuple = ()  # a tuple, so torch does not register the tower as a child

    def __getitem__(self, idx):
        """``model[i]`` is a child; ``model[a:b]`` a plain :class:`torch.nn.Sequential` of children
        (e.g. ``model[:-1]``, the representation)."""
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)

    @property
    def partner(self) -> "ZooModel | None":
        return self._partner[0] if self._partner else None

    def attach_partner(self, partner: "ZooModel") -> None:
        """Pair this (image) tower with its text tower."""
        if not isinstance(partner, ZooModel) or partner.modality != "text":
            raise ValueError("the partner must be a text ZooModel (the clip text tower)")
        self._partner = (partner,)


def build(cfg: TrainConfig | dict, arch: str | None = None, width: int | None = None) -> ZooModel:
    """An untrained model for ``cfg`` (``arch``/``width`` override, used for the clip text tower).

    Returns a :class:`ZooModel` (a :class:`torch.nn.Sequential` with named children and the
    declared attributes ``arch``, ``modality``, ``task_slices``, ``prh_config``).
    """
    cfg = as_config(cfg)
    arch = arch or cfg.arch
    w = width or cfg.width
    size = int(cfg.world_options.get("image_size", 32))
    layers: list[tuple[str, nn.Module]] = []
    if arch == "mlp":
        layers.append(("stem", nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, w), nn.ReLU())))
        layers += [(f"block{i}", nn.Sequential(nn.Linear(w, w), nn.ReLU())) for i in range(1, cfg.depth + 1)]
    elif arch == "cnn":
        layers.append(("stem", nn.Sequential(AddCoords(), nn.Conv2d(5, w, 3, stride=2, padding=1, bias=False),
                                             nn.BatchNorm2d(w), nn.ReLU())))
        for i in range(1, cfg.depth + 1):
            stride = 2 if i <= 2 else 1  # stem 32 -> 16, blocks 16 -> 8 -> 4 px, then keep the resolution
            layers.append((f"block{i}", nn.Sequential(nn.Conv2d(w, w, 3, stride=stride, padding=1, bias=False),
                                                      nn.BatchNorm2d(w), nn.ReLU())))
        layers.append(("pool", GlobalPool("max")))
    elif arch == "vit":
        if w % 8:
            raise ValueError(f"vit width must be a multiple of 8, got {w}")
        layers.append(("stem", PatchEmbed(size, size // 4, w)))  # a 4 x 4 grid of patches
        layers += [(f"block{i}", _transformer_block(w)) for i in range(1, cfg.depth + 1)]
        layers.append(("pool", GlobalPool("mean", w)))
    elif arch == "bow":
        layers.append(("stem", nn.Sequential(nn.Linear(len(text_vocabulary()), w), nn.ReLU())))
        layers += [(f"block{i}", nn.Sequential(nn.Linear(w, w), nn.ReLU())) for i in range(1, cfg.depth + 1)]
    elif arch == "gru":
        layers.append(("embed", TokenEmbed(len(text_vocabulary()), w, None)))
        layers += [(f"block{i}", GRUBlock(w)) for i in range(1, cfg.depth + 1)]
        layers.append(("pool", LastStep()))
    elif arch == "transformer":
        if w % 8:
            raise ValueError(f"transformer width must be a multiple of 8, got {w}")
        layers.append(("embed", TokenEmbed(len(text_vocabulary()), w, cfg.max_len)))
        layers += [(f"block{i}", _transformer_block(w)) for i in range(1, cfg.depth + 1)]
        layers.append(("pool", GlobalPool("mean", w)))
    else:
        raise ValueError(f"unknown arch {arch!r}: choose from {IMAGE_ARCHS + TEXT_ARCHS}")
    modality = "image" if arch in IMAGE_ARCHS else "text"
    layers.append(("head", _head(cfg, w, modality)))
    slices = head_size(cfg)[1] if cfg.objective == "classify" else {}
    return ZooModel(layers, cfg=cfg, arch=arch, modality=modality, task_slices=slices, image_size=size,
                    max_len=cfg.max_len)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def text_vocabulary() -> tuple[str, ...]:
    """Token list of the text models: padding, unknown, then every word of the world's captions."""
    return (PAD, UNK) + tuple(world.vocabulary())


def image_tensor(images, image_size: int | None = None) -> torch.Tensor:
    """``n x H x W x 3`` uint8 images (or a list of PIL images, resized to ``image_size``) ->
    float tensor ``n x 3 x H x W``, scaled as ``(x / 255 - 0.5) / 0.25``."""
    if isinstance(images, (list, tuple)):
        if image_size is None:
            raise ValueError("image_size is needed to convert a list of PIL images")
        images = np.stack([np.asarray(im.convert("RGB").resize((image_size, image_size))) for im in images])
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be n x H x W x 3, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255), got {arr.dtype}")
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.25


def token_ids(captions: list[str], max_len: int) -> torch.Tensor:
    """Left-padded token ids ``n x max_len`` (unknown words map to ``<unk>``)."""
    index = {w: i for i, w in enumerate(text_vocabulary())}
    out = torch.zeros(len(captions), max_len, dtype=torch.long)
    for i, c in enumerate(captions):
        toks = [index.get(t, 1) for t in world.tokenize(c)]
        if len(toks) > max_len:
            raise ValueError(f"caption {i} has {len(toks)} tokens > max_len={max_len}; raise TrainConfig.max_len")
        if toks:
            out[i, max_len - len(toks):] = torch.tensor(toks)
    return out


def bag_of_words(captions: list[str]) -> torch.Tensor:
    """Word counts ``n x V`` over :func:`text_vocabulary` (unknown words counted as ``<unk>``)."""
    index = {w: i for i, w in enumerate(text_vocabulary())}
    out = torch.zeros(len(captions), len(index))
    for i, c in enumerate(captions):
        for t in world.tokenize(c):
            out[i, index.get(t, 1)] += 1.0
    return out


def _check_captions(captions) -> list[str]:
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise ValueError("text inputs must be a list of strings")
    return list(captions)


def prepare(model: nn.Module, inputs) -> torch.Tensor:
    """Turn ``inputs`` into the tensor ``model`` takes: a :class:`prhlib.world.WorldSample` (its
    images or captions, by the model's modality), uint8 images ``n x H x W x 3``, a list of PIL
    images, a list of captions, or an already prepared tensor."""
    if isinstance(inputs, torch.Tensor):
        return inputs
    if isinstance(inputs, world.WorldSample):
        inputs = inputs.images if model.modality == "image" else inputs.captions
    if model.modality == "image":
        x = image_tensor(inputs, model.image_size)
        if model.arch in ("mlp", "vit") and x.shape[-1] != model.image_size:
            raise ValueError(f"this {model.arch} takes {model.image_size} px images, got {x.shape[-1]} px")
        return x
    captions = _check_captions(inputs)
    if model.arch == "bow":
        return bag_of_words(captions)
    return token_ids(captions, model.max_len)


# --------------------------------------------------------------------------------------------
# embeddings
# --------------------------------------------------------------------------------------------
def _pool(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 3:
        return x.mean(dim=1)
    return x.flatten(1)


def layer_names(model: nn.Sequential, include_head: bool = False) -> list[str]:
    """Names of the model's children (without the task head unless ``include_head``)."""
    names = [n for n, _ in model.named_children()]
    return names if include_head else names[:-1]


@torch.no_grad()
def embed(model: nn.Sequential, inputs, batch_size: int = 256, layers=None) -> np.ndarray:
    """Features of every named child (except the head), pooled: ``n x L x d`` float32.

    Feature maps are averaged over positions, token sequences over tokens. ``layers`` selects
    children by name (in model order).
    """
    names = layer_names(model)
    if layers is not None:
        unknown = [l for l in layers if l not in layer_names(model, include_head=True)]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}: the model has {layer_names(model, True)}")
        names = [n for n in layer_names(model, True) if n in set(layers)]
    x_all = prepare(model, inputs)
    if len(x_all) == 0:
        raise ValueError("no inputs")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    try:
        with reproducible(device.type):
            for start in range(0, len(x_all), batch_size):
                x = x_all[start:start + batch_size].to(device)
                feats = []
                for name, child in model.named_children():
                    x = child(x)
                    if name in names:
                        feats.append(_pool(x).float().cpu())
                    if name == names[-1]:
                        break
                dims = {f.shape[1] for f in feats}
                if len(dims) > 1:
                    raise ValueError(f"layers have different widths {sorted(dims)}; pick layers of one width")
                outs.append(torch.stack(feats, dim=1))
    finally:
        model.train(was_training)
    return torch.cat(outs).numpy().astype(np.float32)


@torch.no_grad()
def encode(model: nn.Sequential, inputs, batch_size: int = 256) -> np.ndarray:
    """The final representation (everything before the head): ``n x d`` float32."""
    return embed(model, inputs, batch_size=batch_size, layers=[layer_names(model)[-1]])[:, 0]


@torch.no_grad()
def _forward(model: nn.Sequential, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with reproducible(device.type):
            return torch.cat([model(x[s:s + batch_size].to(device)).cpu() for s in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=12)
def _world(n: int, seed: int, options: tuple) -> world.WorldSample:
    return world.sample(n, seed=seed, **dict(options))


def world_options(model: nn.Module) -> dict:
    """The world options the model was trained on."""
    return model.prh_config.world_options


def evaluate(model: nn.Sequential, n: int = 1000, seed: int = EVAL_SEED) -> dict:
    """Task accuracy of a ``classify`` model on ``n`` held-out world samples, per task, with the
    chance level (the majority-class rate of the same samples). Returns
    ``{"accuracy": {task: acc}, "chance": {task: rate}}``."""
    cfg = model.prh_config
    if cfg.objective != "classify":
        raise ValueError(f"evaluate() scores classification heads; this model's objective is "
                         f"{cfg.objective!r}: use probe() for its representation")
    data = _world(int(n), int(seed), cfg.world)
    logits = _forward(model, prepare(model, data))
    acc, chance = {}, {}
    for task, sl in model.task_slices.items():
        y = data.labels(task)
        acc[task] = float((logits[:, sl].argmax(1).numpy() == y).mean())
        chance[task] = float(np.bincount(y).max() / len(y))
    return {"accuracy": acc, "chance": chance}


def probe_features(feats_train: np.ndarray, y_train: np.ndarray, feats_test: np.ndarray,
                   y_test: np.ndarray, alpha: float = 1.0) -> float:
    """Test accuracy of a linear probe: a ridge classifier (least squares onto one-hot labels,
    penalty ``alpha``) on features standardised with the training set's mean and std."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        return float((y_test == y_train[0]).mean())
    clf = make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha))
    clf.fit(feats_train, y_train)
    return float(clf.score(feats_test, y_test))


def probe(model: nn.Sequential, tasks=world.ATTRIBUTES, n_train: int = 1000, n_test: int = 1000,
          seed: int = PROBE_SEED, options: dict | None = None) -> dict:
    """Linear-probe accuracy of each attribute from the model's representation (:func:`encode`),
    on held-out world samples (``options`` default: the model's own world). The analogue of the
    paper's VTAB linear probes. Returns ``{"probe": {task: acc}, "chance": {task: rate}}``."""
    opts = tuple(sorted((options if options is not None else world_options(model)).items()))
    opts = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in opts)
    train = _world(int(n_train), int(seed), opts)
    test = _world(int(n_test), int(seed) + 1, opts)
    f_tr, f_te = encode(model, train), encode(model, test)
    acc, chance = {}, {}
    for t in tasks:
        y_tr, y_te = train.labels(t), test.labels(t)
        acc[t] = probe_features(f_tr, y_tr, f_te, y_te)
        chance[t] = float(np.bincount(y_te).max() / len(y_te))
    return {"probe": acc, "chance": chance}


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _augment(x: torch.Tensor, g: torch.Generator, shift: int = 3) -> torch.Tensor:
    """A random view of a batch of images: shift by up to ``shift`` px (reflect-padded), random
    brightness and contrast, pixel noise. No flips or hue changes: x position and colour survive."""
    n, _, h, w = x.shape
    pad = F.pad(x, (shift, shift, shift, shift), mode="reflect")
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=g)
    out = torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    contrast = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
    bright = 0.4 * torch.randn(n, 1, 1, 1, generator=g)
    return out * contrast + bright + 0.2 * torch.randn(out.shape, generator=g)


def info_nce(za: torch.Tensor, zb: torch.Tensor, temperature=0.1) -> torch.Tensor:
    """Symmetric InfoNCE loss (the CLIP / SimCLR contrastive loss) of paired rows.

    Row ``i`` of ``za`` and row ``i`` of ``zb`` are a positive pair; every other row of the batch
    is a negative. Rows are l2-normalised, ``S = za zb^T / temperature`` (``n x n``), and

        loss = ( CE(S, diag) + CE(S^T, diag) ) / 2,

    the mean cross-entropy of picking the partner in each direction (Oord et al. 2018;
    Radford et al. 2021).

    Parameters
    ----------
    za, zb : torch.Tensor, ``n x d``
        Paired embeddings (``n >= 2``), e.g. image and caption, or two views of one input.
    temperature : float or 0-d torch.Tensor
        Softmax temperature (> 0). CLIP learns it: pass ``1 / logit_scale.exp()``.

    Returns
    -------
    torch.Tensor
        A scalar; ``log(n)`` for unrelated embeddings, towards 0 for perfect pairing.
    """
    if not (isinstance(za, torch.Tensor) and isinstance(zb, torch.Tensor)):
        raise ValueError("za and zb must be torch tensors (n x d)")
    if za.dim() != 2 or za.shape != zb.shape or za.shape[0] < 2:
        raise ValueError(f"za and zb must both be n x d with n >= 2, got {tuple(za.shape)} and "
                         f"{tuple(zb.shape)}")
    t = temperature if isinstance(temperature, torch.Tensor) else float(temperature)
    value = float(t.detach()) if isinstance(t, torch.Tensor) else t   # a learned one carries a gradient
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be a finite positive number, got {value}")
    logits = F.normalize(za, dim=-1) @ F.normalize(zb, dim=-1).T / t
    target = torch.arange(len(za), device=za.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@contextmanager
def reproducible(device: str | None = None):
    """Context for training and inference that gives the same numbers on every machine.

    On CPU, PyTorch runs on one thread: these models are too small to gain from intra-op threads
    (the synchronisation costs more, badly so on a shared machine), and the thread count changes the
    order of floating-point sums, so results would otherwise depend on the machine's core count.
    On CUDA, deterministic algorithms are switched on. Both are restored on exit. (On CPU the
    kernels used here are deterministic already; switching the global flag on would also import
    torch's compiler stack, which takes seconds. ``tests/test_zoo.py`` checks determinism.)
    """
    device = device or _config.device()
    if device == "cpu":
        with limited(1):
            yield
        return
    prev = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


# One loss per objective. Each takes the model and a batch (a dict of tensors, see
# ``_batch``) and returns a scalar; ``LOSSES`` is the table ``_fit`` reads.
def _loss_classify(model: ZooModel, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the tasks, each on its slice of the head's logits."""
    logits = model(batch["x"])
    losses = [F.cross_entropy(logits[:, sl], batch["labels"][t]) for t, sl in model.task_slices.items()]
    return sum(losses) / len(losses)


def _loss_clip(model: ZooModel, batch: dict) -> torch.Tensor:
    """InfoNCE between the image tower and its text tower, learned temperature (capped at 1/100)."""
    scale = batch["logit_scale"].clamp(max=math.log(100)).exp()
    return info_nce(model(batch["x"]), model.partner(batch["text"]), 1 / scale)


def _loss_simclr(model: ZooModel, batch: dict) -> torch.Tensor:
    """InfoNCE between two views of the same inputs (temperature 0.1)."""
    return info_nce(model(batch["view1"]), model(batch["view2"]), 0.1)


def _loss_autoencode(model: ZooModel, batch: dict) -> torch.Tensor:
    """Reconstruct the image (mean squared error) or which words the caption contains (binary
    cross-entropy per vocabulary word): an objective that uses no labels."""
    if model.modality == "image":
        return F.mse_loss(model(batch["x"]), batch["x"])
    return F.binary_cross_entropy_with_logits(model(batch["x"]), batch["words"])


#: objective -> loss(model, batch)
LOSSES = {"classify": _loss_classify, "clip": _loss_clip, "simclr": _loss_simclr,
          "autoencode": _loss_autoencode}


def _training_tensors(cfg: TrainConfig, model: ZooModel, data: world.WorldSample) -> dict:
    """Everything a batch is cut from: the whole training set as tensors."""
    out = {"x": prepare(model, data)}
    if cfg.objective == "classify":
        out["labels"] = {t: torch.from_numpy(data.labels(t)) for t in cfg.tasks}
    if model.partner is not None:
        out["text"] = prepare(model.partner, data)
    if cfg.objective == "autoencode" and cfg.modality == "text":
        out["words"] = (bag_of_words(data.captions) > 0).float()
    return out


def _text_views(cfg: TrainConfig, model: ZooModel, data: world.WorldSample, epoch: int) -> list:
    """Two fresh paraphrases of every training caption (text simclr's views for one epoch)."""
    return [prepare(model, world.describe(data.scenes, seed=cfg.data_seed * 1000 + 2 * epoch + v,
                                          text_drop=data.options["text_drop"])) for v in (0, 1)]


def _batch(cfg: TrainConfig, tensors: dict, idx: torch.Tensor, views, g: torch.Generator,
           device) -> dict:
    """The batch ``idx`` of the training tensors, on ``device``."""
    batch = {"x": tensors["x"][idx].to(device)}
    if "labels" in tensors:
        batch["labels"] = {t: v[idx].to(device) for t, v in tensors["labels"].items()}
    for key in ("text", "words"):
        if key in tensors:
            batch[key] = tensors[key][idx].to(device)
    if cfg.objective == "simclr":
        if views is None:  # images: two random augmentations
            xb = tensors["x"][idx]
            batch["view1"], batch["view2"] = _augment(xb, g).to(device), _augment(xb, g).to(device)
        else:  # captions: two paraphrases
            batch["view1"], batch["view2"] = views[0][idx].to(device), views[1][idx].to(device)
    return batch


def _fit(cfg: TrainConfig) -> tuple[ZooModel, dict]:
    """Train a model for ``cfg`` from scratch with ``LOSSES[cfg.objective]``. Returns the model
    (eval mode, on the configured device) and ``{"first_loss", "final_loss", "train_seconds"}``."""
    device = _config.device()
    torch.manual_seed(cfg.seed)
    model = build(cfg).to(device)
    params = list(model.parameters())
    logit_scale = None
    if cfg.objective == "clip":
        model.attach_partner(build(cfg, arch=cfg.text_arch, width=cfg.text_width).to(device))
        logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07), device=device))
        params += list(model.partner.parameters()) + [logit_scale]
    data = _world(cfg.n_train, cfg.data_seed, cfg.world)
    tensors = _training_tensors(cfg, model, data)
    loss_fn = LOSSES[cfg.objective]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps_per_epoch = cfg.n_train // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total)
    g = torch.Generator().manual_seed(cfg.seed)
    running, first = float("nan"), []
    start = time.perf_counter()
    towers = [model] + ([model.partner] if model.partner is not None else [])
    for tower in towers:
        tower.train()

    def loss_of(batch: dict) -> torch.Tensor:
        if logit_scale is not None:
            batch["logit_scale"] = logit_scale
        return loss_fn(model, batch)

    bar = _config.progress(range(cfg.epochs), desc=f"train {cfg.arch}/{cfg.objective}", leave=False)
    for epoch in bar:
        order = torch.randperm(cfg.n_train, generator=g)
        text_simclr = cfg.objective == "simclr" and cfg.modality == "text"
        views = _text_views(cfg, model, data, epoch) if text_simclr else None
        batches = (_batch(cfg, tensors, order[step * cfg.batch_size:(step + 1) * cfg.batch_size], views, g,
                          device) for step in range(steps_per_epoch))   # drawn lazily, one per step
        for loss in descend(opt, batches, loss_of, sched, what=f"for {cfg}"):
            running = loss if math.isnan(running) else 0.9 * running + 0.1 * loss
            if len(first) < 10:
                first.append(loss)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{running:.3f}")
    seconds = time.perf_counter() - start
    for tower in towers:
        tower.eval()
    if logit_scale is not None:
        model.logit_scale = float(logit_scale.detach().exp())
    return model, {"first_loss": float(np.mean(first)), "final_loss": running, "train_seconds": seconds}


def _n_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _task_metrics(model, cfg: TrainConfig) -> dict:
    out = {"objective": cfg.objective, "modality": cfg.modality, "n_params": _n_params(model)}
    if cfg.objective == "classify":
        out.update(evaluate(model))
    pr = probe(model)
    out["probe"], out["probe_chance"] = pr["probe"], pr["chance"]
    out["competence"] = float(np.mean(list(pr["probe"].values())))
    if cfg.objective == "clip":
        data = _world(100, EVAL_SEED, cfg.world)
        fi = F.normalize(torch.from_numpy(encode_projected(model, data)), dim=-1)
        ft = F.normalize(torch.from_numpy(encode_projected(model.partner, data)), dim=-1)
        out["retrieval_top1"] = float(((fi @ ft.T).argmax(1) == torch.arange(len(fi))).float().mean())
        out["retrieval_chance"] = 1.0 / len(fi)
        tp = probe(model.partner)
        out["text_probe"] = tp["probe"]
    return out


@torch.no_grad()
def encode_projected(model: nn.Sequential, inputs, batch_size: int = 256) -> np.ndarray:
    """The head's output (e.g. a clip model's joint embedding): ``n x out`` float32."""
    return _forward(model, prepare(model, inputs), batch_size).numpy().astype(np.float32)


def _paths(cfg: TrainConfig) -> tuple[Path, Path]:
    folder = _config.cache_dir("zoo")
    key = cfg.key()
    return folder / f"{key}.pt", folder / f"{key}.json"


def _load(cfg: TrainConfig) -> tuple[nn.Sequential, dict] | None:
    wpath, mpath = _paths(cfg)
    if not (wpath.exists() and mpath.exists()):
        return None
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=True)
        metrics = json.loads(mpath.read_text())
    except Exception as err:  # a corrupt cache entry: retrain rather than fail
        warnings.warn(f"ignoring unreadable cache entry {wpath.name}: {err}", RuntimeWarning, stacklevel=3)
        return None
    try:
        model = build(cfg)
        model.load_state_dict(state["model"])
        if cfg.objective == "clip":
            partner = build(cfg, arch=cfg.text_arch, width=cfg.text_width)
            partner.load_state_dict(state["partner"])
            partner.eval()
            model.attach_partner(partner)
            model.logit_scale = float(state["logit_scale"])
    except (KeyError, RuntimeError) as err:  # weights of another architecture: retrain
        warnings.warn(f"ignoring cache entry {wpath.name} that does not fit the model: {err}", RuntimeWarning,
                      stacklevel=3)
        return None
    device = _config.device()
    model.to(device).eval()
    if cfg.objective == "clip":
        model.partner.to(device)
    return model, metrics


def train(cfg: TrainConfig | dict, force: bool = False) -> tuple[nn.Sequential, dict]:
    """Train (or load from the cache) the model described by ``cfg``.

    Returns
    -------
    model : torch.nn.Sequential
        In eval mode; ``model[:-1]`` is the representation, ``model[-1]`` the head. A ``clip``
        model carries its text tower as ``model.partner``.
    metrics : dict
        ``train_seconds`` (measured when it was trained), ``first_loss`` (mean of the first 10
        steps), ``final_loss`` (running mean at the end), ``n_params``,
        ``accuracy``/``chance`` per task (classify, held-out), ``probe``/``probe_chance`` (linear
        probes of every attribute, held-out), ``competence`` (mean probe accuracy), for clip
        ``retrieval_top1`` (image -> caption among 100 held-out pairs) and ``text_probe``; ``cached``
        (loaded rather than trained) and ``key``.
    """
    cfg = as_config(cfg)
    if not force:
        hit = _load(cfg)
        if hit is not None:
            model, metrics = hit
            return model, {**metrics, "cached": True}
    with reproducible():
        model, fit = _fit(cfg)
        metrics = {"key": cfg.key(), "config": dataclasses.asdict(cfg), **fit, **_task_metrics(model, cfg)}
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if cfg.objective == "clip":
        state["partner"] = {k: v.detach().cpu() for k, v in model.partner.state_dict().items()}
        state["logit_scale"] = torch.tensor(model.logit_scale)
    wpath, mpath = _paths(cfg)
    atomic_write(wpath, lambda f: torch.save(state, f))
    atomic_write(mpath, lambda f: f.write(json.dumps(metrics, indent=1, default=list)), mode="w")
    return model, {**metrics, "cached": False}


def train_many(configs, force: bool = False):
    """:func:`train` each config in turn (a sweep).

    Parameters
    ----------
    configs : mapping of name -> config, or iterable of configs
        :class:`TrainConfig` objects or dicts of their fields.
    force : bool
        Retrain even when a cached model exists.

    Returns
    -------
    dict or list
        ``{name: (model, metrics)}`` for a mapping (same order), else a list of
        ``(model, metrics)``.
    """
    if isinstance(configs, dict):
        return {name: train(cfg, force=force) for name, cfg in configs.items()}
    if isinstance(configs, (str, bytes, TrainConfig)):
        raise ValueError("configs must be a dict of name -> config or a list of configs")
    return [train(cfg, force=force) for cfg in configs]
