"""Validation at the boundary: the one place where prhlib checks its arguments.

Every public function validates what it is given with these helpers, so a bad argument gets the
same kind of message everywhere: a ``ValueError`` that names the argument, what it was, and the fix.
Nothing here is part of the public API (the leading underscore of the module says so); modules of
prhlib import these names freely.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable

import numpy as np
import torch

__all__ = ["check_int", "check_float", "check_bool", "check_choice", "check_seed", "reject_unknown",
           "to_tensor", "require_finite", "as_matrix", "as_pair", "check_k", "as_layers", "as_array",
           "unit_scale", "available_memory", "check_memory"]


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int, or a ``ValueError`` naming ``name``.

    Python and NumPy integers are accepted; ``bool`` (``True`` is not a count), floats (even
    ``3.0``), strings and ``None`` are rejected. ``minimum`` / ``maximum`` are inclusive bounds.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__}); "
                         f"pass a whole number such as {name}=10")
    value = int(value)
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must be between {lo} and {hi}, got {name}={value}")
    return value


def check_float(value, name: str, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """``value`` as a finite Python float within the given bounds, or a ``ValueError``.

    Python and NumPy reals (``np.float32(0.05)``) and integers are accepted; ``bool``, strings,
    ``None``, NaN and inf are rejected. A low-precision NumPy float is read through its shortest
    decimal form, so ``np.float32(0.05)`` gives ``0.05`` (not 0.05000000074505806).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if isinstance(value, np.floating) and np.finfo(value.dtype).bits < 64:
        value = float(str(value))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}, got {name}={value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """``value`` if it is a bool (Python or NumPy), else a ``ValueError`` (no truthiness of 0/1/"no")."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(value, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_seed(value, name: str = "seed") -> int:
    """A random seed: an integer in [0, 2**32 - 1] (not a bool, a float or ``None``)."""
    if value is None:
        raise ValueError(f"{name} must be an integer in [0, 2**32 - 1], got None: pass a fixed seed "
                         "(e.g. 0) so that results repeat")
    return check_int(value, name, minimum=0, maximum=2**32 - 1)


def reject_unknown(kwargs: dict, where: str, allowed: Iterable[str] = ()) -> None:
    """Raise a ``ValueError`` when ``kwargs`` holds a keyword not in ``allowed``.

    A misspelt option (``kernal="rbf"``) must not be silently ignored.
    """
    allowed = tuple(allowed)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        valid = ", ".join(sorted(allowed)) if allowed else "none"
        raise ValueError(f"{where} got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
                         f"valid options: {valid}")


def to_tensor(x, name: str) -> torch.Tensor:
    """A tensor view of ``x`` (no copy where possible): floats kept, half precision widened to
    float32, integers and booleans converted to float64. Strings, objects and complex numbers raise."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except ValueError as err:   # ragged nested lists
            raise ValueError(f"{name} must be a numeric array; NumPy could not build one ({err})") from None
        if arr.dtype == object:
            raise ValueError(f"{name} must be a numeric array, got an object array (ragged rows, "
                             "None or mixed types?)")
        if arr.dtype.kind in "USVMm":
            raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype} (strings, bytes or "
                             "dates?); convert it with np.asarray(x, dtype=float)")
        if np.iscomplexobj(arr):
            raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:   # read-only (e.g. a memory map): torch needs its own buffer
            arr = arr.copy()
        t = torch.from_numpy(arr)
    if t.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.to(torch.float32)
    if not t.is_floating_point():
        return t.to(torch.float64)
    return t


def require_finite(t: torch.Tensor, name: str) -> None:
    """Raise a ``ValueError`` at the first NaN or inf of ``t``."""
    # One cheap reduction first: a NaN or inf makes the sum non-finite (so can an overflow of huge
    # finite values, which the exact check below then clears).
    if bool(torch.isfinite(t.sum())):
        return
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
        raise ValueError(f"{name} contains {kind} values (first at index {tuple(bad)}); "
                         "remove or impute them before measuring alignment")


def as_matrix(x, name: str = "a", check_finite: bool = True) -> torch.Tensor:
    """Validate one representation and return it as a 2-D floating-point tensor (n x d).

    Parameters
    ----------
    x : array-like or torch.Tensor, shape (n, d)
        Features, one row per input. NumPy arrays become CPU tensors (float32 stays float32, integers
        become float64); tensors keep their device.
    name : str
        Used in error messages.
    check_finite : bool
        Check for NaN and inf (skipped only where the caller already checked).

    Raises
    ------
    ValueError
        for strings/objects, a 1-D or 3-D input, fewer than 2 rows, no columns, NaN or inf.
    """
    t = to_tensor(x, name)
    if t.ndim != 2:
        hint = " (a single feature? use x.reshape(-1, 1))" if t.ndim == 1 else ""
        if t.ndim == 3:
            hint = " (layered features n x L x d? use the layer functions or slice one layer)"
        raise ValueError(f"{name} must be a 2-D array n x d, got shape {tuple(t.shape)}{hint}")
    if t.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (samples), got {t.shape[0]}")
    if t.shape[1] < 1:
        raise ValueError(f"{name} has no columns (features)")
    if check_finite:
        require_finite(t, name)
    return t


def as_pair(a, b, names: tuple[str, str] = ("a", "b")) -> tuple[torch.Tensor, torch.Tensor]:
    """Two representations of the same n samples: :func:`as_matrix` of each, same rows, same device."""
    ta, tb = as_matrix(a, names[0]), as_matrix(b, names[1])
    if ta.shape[0] != tb.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must describe the same samples: {names[0]} has "
                         f"{ta.shape[0]} rows, {names[1]} has {tb.shape[0]}")
    if ta.device != tb.device:
        tb = tb.to(ta.device)
    return ta, tb


def check_k(k, n: int, name: str = "k", minimum: int = 1) -> int:
    """A neighbour count: an integer in [minimum, n - 1] (a sample is never its own neighbour)."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {k!r}")
    k = int(k)
    if k < minimum or k > n - 1:
        raise ValueError(f"{name} must be between {minimum} and n - 1 = {n - 1} (a sample is never its "
                         f"own neighbour), got {name}={k} for n={n}")
    return k


def as_layers(layers, name: str = "layers_a") -> list[torch.Tensor]:
    """Validate layered features and return one n x d tensor per layer.

    Parameters
    ----------
    layers : array-like of shape (n, L, d), or a sequence of L arrays of shape (n, d_l)
        A list allows a different width per layer (e.g. the stages of a CNN).

    Raises
    ------
    ValueError
        for an empty list, a wrong number of dimensions, NaN/inf, or layers with different row counts.
    """
    if isinstance(layers, (list, tuple)):
        if len(layers) == 0:
            raise ValueError(f"{name} is an empty list: give at least one layer")
        mats = [as_matrix(x, f"{name}[{i}]") for i, x in enumerate(layers)]
    else:
        t = to_tensor(layers, name)
        if t.ndim == 2:
            t = t[:, None, :]
        if t.ndim != 3:
            raise ValueError(f"{name} must be n x L x d (or a list of n x d layers), got shape "
                             f"{tuple(t.shape)}")
        require_finite(t, name)
        mats = [as_matrix(t[:, i, :], f"{name}[:, {i}]", check_finite=False) for i in range(t.shape[1])]
    rows = {m.shape[0] for m in mats}
    if len(rows) != 1:
        raise ValueError(f"every layer of {name} must have the same number of rows, got {sorted(rows)}")
    device = mats[0].device
    return [m.to(device) for m in mats]


def as_array(x, name: str = "a") -> np.ndarray:
    """:func:`as_matrix` as a float64 NumPy array on the CPU (for code that works in NumPy)."""
    return as_matrix(x, name).detach().cpu().double().numpy()


def unit_scale(t: torch.Tensor) -> torch.Tensor:
    """``t`` times the power of two that brings its largest absolute value into [0.5, 1).

    For metrics invariant to an isotropic scaling of one representation (neighbour metrics, linear
    CKA, CKNNA, SVCCA, RSA, Procrustes): multiplying by a power of two is exact in floating point, so
    the result is bit-identical to the unscaled computation wherever that did not overflow or
    underflow, and features near 1e20 (float32) or 1e300 (float64), or tiny ones, no longer overflow
    to inf or underflow to 0 in the dot products and kernels.
    """
    peak = t.abs().max()
    if not bool(torch.isfinite(peak)) or float(peak) == 0:
        return t
    exponent = math.frexp(float(peak))[1]
    if exponent == 0:
        return t
    half = -exponent // 2            # two exact steps: 2**-exponent alone can overflow float32
    return t * 2.0**half * 2.0**(-exponent - half)


def available_memory(device: torch.device | None = None) -> int:
    """Bytes that can still be allocated: free GPU memory for a CUDA device, else the host's
    ``MemAvailable`` (psutil when installed, else /proc/meminfo); a large number when unknown."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


def check_memory(what: str, n: int, matrices: float, device: torch.device | None = None) -> None:
    """Raise a ``ValueError`` before an O(n^2) computation that would not fit in memory.

    ``matrices``: how many float64 n x n matrices ``what`` holds at its peak. The message gives the
    estimate, the memory available and the largest n that fits.
    """
    need = matrices * 8 * n * n
    have = available_memory(device)
    if need > have:
        largest = int(math.sqrt(have / (matrices * 8)))
        raise ValueError(f"{what} with n={n} samples needs about {need / 1e9:.1f} GB ({matrices:g} dense "
                         f"n x n float64 matrices) but only {have / 1e9:.1f} GB is available: use at most "
                         f"n={largest} samples (a random subset), or a metric with O(n k) memory such as "
                         "mutual_knn")


#: The clamp rules of :func:`prhlib.metrics.prepare`: ``"exact"`` (the official code with
#: ``--precise``: one exact quantile of |x| over the whole tensor) and ``"per_sample"`` (the official
#: command without ``--precise``: ``torch.quantile`` of each sample's |x|, averaged over samples).
CLAMP_RULES = ("exact", "per_sample")


def check_clamp(value, name: str = "clamp") -> str:
    """``value`` if it is one of :data:`CLAMP_RULES`, else a ``ValueError`` naming the choices."""
    if not isinstance(value, str) or value not in CLAMP_RULES:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, CLAMP_RULES))} (the exact global "
                         f"quantile of |x|, or the official default: each sample's quantile, averaged); "
                         f"got {value!r}")
    return value


__all__ += ["CLAMP_RULES", "check_clamp"]
