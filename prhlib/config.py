"""One switch for the whole book: the profile, plus the seed, device and cache folder.

Profiles
--------
``small`` (default)
    CPU only, offline. Real pretrained models that ship inside PyPI wheels, real image--caption
    pairs from Debian packages, and the toy world. This is what CI executes and what the website shows.
``full``
    GPU and internet (e.g. Google Colab): the paper's models and the WIT-1024 pairs.

Choose with the environment variable ``PRH_PROFILE`` or with one call at the top of a chapter::

    from prhlib import config
    config.setup()                 # profile from PRH_PROFILE, default "small"; seed 0
    config.setup(profile="full")   # checks for a GPU and the network first; fails fast without them
"""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

import numpy as np

from ._checks import check_seed

PROFILES = ("small", "full")
DEFAULT_SEED = 0

#: Hosts the full profile needs. Checked once by :func:`check_network`.
FULL_PROFILE_HOSTS = (("huggingface.co", 443),)

#: Environment variable that lets the full profile run without a GPU (slow; for testing the code path).
ALLOW_CPU_ENV = "PRH_ALLOW_CPU"

#: What :func:`check_gpu` tells a reader whose runtime has no GPU.
GPU_HINT = (
    "The 'full' profile runs the paper's models and needs a GPU, but PyTorch sees none. "
    "In Google Colab: Runtime > Change runtime type > Hardware accelerator: GPU (e.g. T4) > Save, then run "
    "the notebook again from the top. Elsewhere: install a CUDA build of PyTorch on a machine with an NVIDIA "
    "GPU. To run the small, CPU-only profile instead: config.setup(profile='small') (or PRH_PROFILE=small); "
    f"to force the full profile on a CPU anyway (very slow): config.setup(profile='full', allow_cpu=True) or "
    f"{ALLOW_CPU_ENV}=1."
)

_state: dict = {"profile": None, "seed": DEFAULT_SEED, "network_ok": False}


def validate_profile(name: str) -> str:
    """``name`` normalised (``" Full"`` -> ``"full"``); ``ValueError`` naming the choices otherwise."""
    name = str(name).strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}: choose one of {PROFILES} "
            "(set PRH_PROFILE=small or PRH_PROFILE=full, or call config.setup(profile=...))"
        )
    return name


def profile() -> str:
    """The active profile: the last :func:`set_profile` call, else ``$PRH_PROFILE``, else ``"small"``."""
    if _state["profile"] is not None:
        return _state["profile"]
    return validate_profile(os.environ.get("PRH_PROFILE", "small") or "small")


def is_full() -> bool:
    """True when the ``full`` profile (GPU, internet, the paper's models) is active."""
    return profile() == "full"


def set_profile(name: str, check: bool = True) -> str:
    """Switch profile for this process. With ``check``, ``full`` first verifies the network.

    Raises
    ------
    ValueError
        for an unknown profile name.
    RuntimeError
        for ``full`` when the model hub cannot be reached (within ``timeout`` seconds, never a hang).
    """
    name = validate_profile(name)
    if name == "full" and check:
        require_network()
    _state["profile"] = name
    os.environ["PRH_PROFILE"] = name
    return name


def _connect(host: str, port: int, timeout: float) -> OSError | None:
    """Try one TCP connection; the error, or None. Name resolution included, never longer than ``timeout``."""
    result: list = [OSError(f"no answer within {timeout:g} s")]

    def attempt():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result[0] = None
        except OSError as err:
            result[0] = err

    worker = threading.Thread(target=attempt, daemon=True)  # getaddrinfo ignores socket timeouts
    worker.start()
    worker.join(timeout)
    return result[0]


def check_network(timeout: float = 5.0, hosts=None) -> None:
    """Fail fast (at most ``timeout`` seconds per host) when hosts the full profile needs are unreachable.

    Parameters
    ----------
    timeout : float, seconds per host
    hosts : sequence of (host, port), default :data:`FULL_PROFILE_HOSTS`

    Raises
    ------
    RuntimeError
        naming the host and how to switch to the offline profile.
    """
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        raise RuntimeError(
            "The 'full' profile needs the Hugging Face hub, but HF_HUB_OFFLINE=1 / TRANSFORMERS_OFFLINE=1 "
            "is set. Unset them, or switch to the offline profile: PRH_PROFILE=small "
            "(or config.setup(profile='small'))."
        )
    for host, port in (FULL_PROFILE_HOSTS if hosts is None else hosts):
        err = _connect(host, port, timeout)
        if err is not None:
            raise RuntimeError(
                f"The 'full' profile needs internet access ({host}:{port} is unreachable: {err}). "
                "Run it on Colab or another machine with a network and a GPU, or switch to the offline "
                "profile: PRH_PROFILE=small (or config.setup(profile='small'))."
            ) from None


def require_network() -> None:
    """:func:`check_network` once per process (after a success, nothing): the guard of every download."""
    if not _state["network_ok"]:
        check_network()
        _state["network_ok"] = True


def check_gpu(allow_cpu: bool = False) -> None:
    """Raise :data:`GPU_HINT` when PyTorch sees no GPU, unless ``allow_cpu`` or ``PRH_ALLOW_CPU=1``."""
    if allow_cpu or os.environ.get(ALLOW_CPU_ENV, "") == "1":
        return
    try:
        import torch
    except ImportError:  # pragma: no cover
        raise RuntimeError(GPU_HINT) from None
    if not torch.cuda.is_available():
        raise RuntimeError(GPU_HINT)


def seed() -> int:
    """The seed set by the last :func:`setup` / :func:`seed_everything` call."""
    return _state["seed"]


def seed_everything(value: int = DEFAULT_SEED) -> int:
    """Seed Python, NumPy and (if installed) PyTorch; make PyTorch's CPU kernels deterministic.

    ``value`` must be an integer in ``[0, 2**32 - 1]`` (NumPy's range); anything else raises
    ``ValueError`` before any generator is touched.
    """
    value = check_seed(value, "seed")
    _state["seed"] = value
    random.seed(value)
    np.random.seed(value)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but chapter 1 does not need it
        return value
    torch.manual_seed(value)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(value)
    return value


def device() -> str:
    """``"cuda"`` when a GPU is visible to PyTorch, else ``"cpu"``."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def cache_dir(*parts: str) -> Path:
    """Folder for cached features and trained toy models (``$PRH_CACHE_DIR``, else ``~/.cache/prhlib``).

    Sub-folders named by ``parts`` are created on demand.
    """
    root = Path(os.environ.get("PRH_CACHE_DIR") or Path.home() / ".cache" / "prhlib").expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def show_progress() -> bool:
    """Progress bars on, unless ``PRH_PROGRESS=0`` (the book build sets it: no bar noise on the website)."""
    return os.environ.get("PRH_PROGRESS", "1") != "0"


def progress(iterable=None, **kwargs):
    """A ``tqdm.auto`` progress bar that respects :func:`show_progress`."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not show_progress())
    return tqdm(iterable, **kwargs)


def _inline_figures_in_kernels() -> None:
    """In a Jupyter kernel started with MPLBACKEND=Agg, switch to the inline backend (else figures vanish)."""
    import sys

    if "ipykernel" not in sys.modules:
        return
    import matplotlib

    if matplotlib.get_backend().lower() == "agg":
        matplotlib.use("module://matplotlib_inline.backend_inline")


def info() -> dict:
    """The facts :func:`setup` prints: prhlib version, profile, seed and device."""
    from . import __version__

    return {"prhlib": __version__, "profile": profile(), "seed": _state["seed"], "device": device()}


def setup(profile: str | None = None, seed: int = DEFAULT_SEED, quiet: bool = False,
          allow_cpu: bool = False) -> None:
    """Call once at the top of every chapter.

    Sets the profile (``None`` keeps ``$PRH_PROFILE`` or ``"small"``), seeds every RNG, applies the
    book's plot style and prints one line: which profile ran, with which seed, on which device.
    :func:`info` returns the same facts as a dict.

    Every argument is checked before anything changes. The ``full`` profile first checks for a GPU
    (:func:`check_gpu`; ``allow_cpu=True`` or ``PRH_ALLOW_CPU=1`` skips it) and for the network
    (:func:`check_network`), and stops within seconds with the fix when one is missing.

    Raises
    ------
    ValueError
        for an unknown profile or a seed that is not an integer in ``[0, 2**32 - 1]``.
    RuntimeError
        for ``full`` without a GPU (and no override) or without a network.
    """
    seed = check_seed(seed, "seed")
    name = validate_profile(globals()["profile"]() if profile is None else profile)
    if name == "full":
        check_gpu(allow_cpu)
    set_profile(name)
    seed_everything(seed)
    if int(np.__version__.split(".")[0]) >= 2:
        # numpy 2 writes scalars as 'np.float64(0.5)'; myst-nb's {glue:text} formatting needs plain '0.5'
        np.set_printoptions(legacy="1.25")
    _inline_figures_in_kernels()
    from . import plotting  # imported here: config sits below every other module

    plotting.use_style()
    if not quiet:
        facts = info()
        print(f"prhlib {facts['prhlib']} | profile: {facts['profile']} | seed: {facts['seed']} | device: {facts['device']}")
