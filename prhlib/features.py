"""Per-layer features of real encoders, batched and cached on disk.

>>> from prhlib import data, features
>>> images, captions = data.load_pairs("tuxpaint")          # the book's shared set: all 785 pairs
>>> img = features.extract("efficientnet_lite0", images)     # 785 x 9 x 1280 (stages zero-padded)
>>> txt = features.extract("minilm_l6", captions)            # 785 x 7 x 384
>>> last = features.extract("minilm_l6", captions, layers="last")   # 785 x 1 x 384, from the same cache file

Every layer is computed and cached once; ``layers`` only slices. The cache file is keyed by the model's
weights identity, its pooling and layers, a content hash of the inputs (image pixels or caption strings)
and the prhlib version, so chapters share features. Files are safetensors (no pickle), written
atomically (``prhlib._io.atomic_write``, with ``fsync``), with a checksum: a corrupt, partial,
non-finite or wrongly typed file is detected and recomputed. The cache folder is checked *before* any
feature is computed; ``cache=False`` bypasses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from . import _optional

_optional.ensure("safetensors", "models")

from . import __version__, config, models  # noqa: E402
from ._io import TMP_GLOB, atomic_write

#: Bumped when the feature layout or pooling changes (invalidates every cache file).
FORMAT_VERSION = 1

log = logging.getLogger("prhlib.features")


# ---------------------------------------------------------------------------------------------
# hashing and cache files
# ---------------------------------------------------------------------------------------------
def input_hash(inputs: Sequence, modality: str) -> str:
    """Content hash of a list of inputs: pixel bytes, size and mode of RGB images, or UTF-8 captions.

    Parameters
    ----------
    inputs : list of RGB PIL images (``modality="image"``) or of str (``modality="text"``)

    Returns
    -------
    str, 32 hex digits
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{modality}:{len(inputs)}".encode())
    for item in inputs:
        if modality == "image":
            h.update(f"|{item.mode}{item.size}|".encode())
            h.update(item.tobytes())
        else:
            b = item.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    return h.hexdigest()


def cache_key(cache_id: str, pooling: str, inputs_digest: str, n: int) -> dict:
    """Everything the cached features depend on: the model's identity and pooling, the inputs, the version."""
    return {
        "model": str(cache_id),
        "pooling": pooling,
        "inputs": inputs_digest,
        "n": int(n),
        "prhlib": __version__,
        "format": FORMAT_VERSION,
    }


def cache_path(key: dict) -> Path:
    """File of the features with this key under ``config.cache_dir("features")``."""
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=10).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(key["model"]))[:80]
    return _cache_folder() / f"{stem}_n{key['n']}_{digest}.safetensors"


def _checksum(arr: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=16).hexdigest()


def save(path: Path, feats: np.ndarray, key: dict, layer_names: Sequence[str], layer_dims: Sequence[int]) -> None:
    """Write ``feats`` (n x L x d float32) atomically, with the key, layer names and widths and a checksum."""
    from safetensors.numpy import save as to_bytes

    feats = np.ascontiguousarray(feats, dtype=np.float32)
    meta = {"key": json.dumps(key, sort_keys=True), "checksum": _checksum(feats),
            "layer_dims": json.dumps([int(d) for d in layer_dims]),
            "layer_names": json.dumps([str(x) for x in layer_names])}
    if not (len(layer_names) == len(layer_dims) == feats.shape[1]):
        raise ValueError("layer_names and layer_dims must match the features' layer axis")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(fh) -> None:
        fh.write(to_bytes({"features": feats}, metadata=meta))
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fh.fileno(), 0o666 & ~umask)  # readable like any other file, not mkstemp's 0600

    atomic_write(path, write)


def load(path: Path, key: dict) -> tuple[np.ndarray, tuple[str, ...], tuple[int, ...]] | None:
    """Cached features, layer names and widths, or None when the file is missing, partial, corrupt or stale."""
    from safetensors import safe_open

    if not _is_regular_file(path):  # missing, or a folder/FIFO/device that must never be opened
        return None
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
            feats = fh.get_tensor("features")
        ok = (json.loads(meta.get("key", "null")) == json.loads(json.dumps(key, sort_keys=True))
              and meta.get("checksum") == _checksum(feats)
              and feats.dtype == np.float32 and feats.ndim == 3 and feats.shape[0] == key["n"]
              and bool(np.isfinite(feats).all()))
        dims = tuple(int(d) for d in json.loads(meta.get("layer_dims", "[]")))
        names = tuple(str(x) for x in json.loads(meta.get("layer_names", "[]")))
        ok = ok and len(dims) == len(names) == feats.shape[1]
    except Exception as err:  # noqa: BLE001 - any unreadable file is recomputed, never trusted
        log.info("feature cache %s is unreadable (%s): recomputing", path.name, err)
        return None
    if not ok:
        log.info("feature cache %s is stale or corrupt: recomputing", path.name)
        return None
    return feats, names, dims


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _cache_problem(what: str) -> ValueError:
    return ValueError(
        f"the feature cache cannot be used: {what}. Point PRH_CACHE_DIR at a writable folder, "
        "or pass cache=False to compute the features without the cache."
    )


def check_writable(path: Path) -> None:
    """Raise a clear ``ValueError`` unless a cache file can be written at ``path`` (checked before computing).

    The folder must exist (or be creatable) and accept a new file; ``path`` itself must be missing or
    a regular file (a folder, FIFO or device there is refused, never opened).
    """
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-", suffix=".tmp")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise _cache_problem(f"{folder} is not a writable folder ({type(err).__name__}: {err.strerror or err})") from None
    if os.path.lexists(path) and not _is_regular_file(path):
        raise _cache_problem(f"{path} exists and is not a regular file (a folder, FIFO or device?): remove it")


def _cache_folder() -> Path:
    try:
        return config.cache_dir("features")
    except OSError as err:
        raise _cache_problem(f"the folder cannot be created ({type(err).__name__}: {err.strerror or err})") from None


# ---------------------------------------------------------------------------------------------
# layer selection
# ---------------------------------------------------------------------------------------------
def layer_indices(layers, layer_names: Sequence[str]) -> list[int]:
    """Indices for ``layers``: ``"all"``, ``"last"``, an int, a layer name, or a list of ints/names."""
    L = len(layer_names)
    if isinstance(layers, str) and layers == "all":
        return list(range(L))
    if isinstance(layers, str) and layers == "last":
        return [L - 1]
    if isinstance(layers, (str, int, np.integer)):
        items = [layers]
    elif isinstance(layers, (list, tuple, np.ndarray, range)):
        items = list(layers)
    else:
        raise ValueError(f"layers must be 'all', 'last', an index, a name or a list of them, got {layers!r}")
    if not items:
        raise ValueError("layers is empty: pass 'all', 'last', an index, a name or a list of them")
    out = []
    for item in items:
        if isinstance(item, str):
            if item not in layer_names:
                raise ValueError(f"unknown layer {item!r}: this model's layers are {list(layer_names)}")
            out.append(list(layer_names).index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not -L <= item < L:
                raise ValueError(f"layer index {item} is out of range for a model with {L} layers")
            out.append(int(item) % L)
        else:
            raise ValueError(f"a layer must be an int or a name, got {item!r}")
    return out


def select(feats: np.ndarray, layers, layer_names: Sequence[str], layer_dims: Sequence[int]) -> np.ndarray:
    """Slice layers out of n x L x d features, trimming zero-padding to the widest selected layer."""
    idx = layer_indices(layers, layer_names)
    width = max(layer_dims[i] for i in idx)
    return np.ascontiguousarray(feats[:, idx, :width])


# ---------------------------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------------------------
def _features(model, inputs, batch_size, cache, layers="all") -> tuple[np.ndarray, tuple[str, ...], tuple[int, ...]]:
    """All layers (n x L x d, zero-padded), layer names and true widths; from the cache when possible."""
    if isinstance(model, models.Encoder):
        enc, modality, pooling, cache_id = model, model.modality, model.pooling, model.cache_id
    else:  # a registered name: the cache is consulted before the model is loaded
        entry = models.spec(model)
        enc, modality, pooling, cache_id = None, entry.modality, entry.pooling, entry.cache_id
    items = models.validate_inputs(inputs, modality)
    use_cache = bool(cache) and cache_id is not None
    if use_cache:
        key = cache_key(cache_id, pooling, input_hash(items, modality), len(items))
        path = cache_path(key)
        hit = load(path, key)
        if hit is not None:
            return hit
        check_writable(path)  # before the expensive part, not after it
    enc = enc or models.get(model)
    layer_indices(layers, enc.layer_names)  # a bad layer request fails before the expensive part
    feats, dims = enc.embed_with_dims(items, batch_size=batch_size)
    names, dims = tuple(enc.layer_names), tuple(int(d) for d in dims)
    if use_cache:
        save(path, feats, key, names, dims)
    return feats, names, dims


def extract(model, inputs, layers="all", batch_size: int | None = None, cache: bool = True) -> np.ndarray:
    """Features of ``inputs`` through every requested layer of ``model``.

    Parameters
    ----------
    model : str (a name from :func:`prhlib.models.available`) or :class:`prhlib.models.Encoder`
    inputs : list of n PIL images / H x W x 3 uint8 arrays (image models) or n str (text models)
    layers : ``"all"``, ``"last"``, an int, a layer name, or a list of them
    batch_size : int, optional (the encoder's default otherwise)
    cache : read and write the on-disk cache (encoders without a ``cache_id`` are never cached)

    Returns
    -------
    np.ndarray, n x L x d, float32. Pooling: CLS token per block (ViTs), mean over non-padding
    tokens per hidden state (text transformers), global average pool per stage (CNNs, narrower
    stages zero-padded to the widest selected one), ``L = 1`` for static embedders.

    Raises
    ------
    ValueError
        for an unknown model or layer, inputs of the wrong modality, an empty input list.
    """
    feats, names, dims = _features(model, inputs, batch_size, cache, layers)
    return select(feats, layers, names, dims)


def extract_list(model, inputs, layers="all", batch_size: int | None = None, cache: bool = True) -> list[np.ndarray]:
    """Like :func:`extract`, but one n x d_l array per layer at its true width (no zero-padding).

    Use it for models whose layers differ in width (CNN stages): :func:`prhlib.metrics.prepare` then
    takes its clamp quantile over real values only. Same cache as :func:`extract`.

    Returns
    -------
    list of L np.ndarray, each n x d_l, float32
    """
    feats, names, dims = _features(model, inputs, batch_size, cache, layers)
    return [np.ascontiguousarray(feats[:, i, : dims[i]]) for i in layer_indices(layers, names)]


def layer_info(model, inputs, batch_size: int | None = None, cache: bool = True) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Layer names and true widths of ``model``'s features of ``inputs`` (from the cache when possible)."""
    _, names, dims = _features(model, inputs, batch_size, cache)
    return names, dims


def clear_cache(model: str | None = None) -> int:
    """Delete cached feature files (of one model's ``cache_id``, or all) and the ``*.tmp`` files that
    killed writes left behind; returns how many files were removed."""
    folder = _cache_folder()
    prefix = None
    if model is not None:
        cache_id = model.cache_id if isinstance(model, models.Encoder) else models.spec(model).cache_id
        prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(cache_id))[:80] + "_n"
    removed = 0
    for f in [*folder.glob("*.safetensors"), *folder.glob(TMP_GLOB)]:
        if (prefix is None or f.name.lstrip(".").startswith(prefix)) and _is_regular_file(f):
            f.unlink()
            removed += 1
    return removed
