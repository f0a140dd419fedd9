"""prhlib: helpers for *The Platonic Representation Hypothesis, hands-on*.

Modules (import them by name, e.g. ``from prhlib import metrics``):

``config``     profile (small/full), seed, device, cache folder
``metrics``    alignment metrics, chance levels, permutation calibration
``world``      the toy world with a known hidden scene Z
``zoo``        small image/text models for the toy world and their training loops
``models``     registry of real encoders per profile
``features``   batched feature extraction with the paper's pooling, cached on disk
``data``       image--caption pairs (tuxpaint, emoji, toy world; WIT-1024 in the full profile)
``stitching``  model stitching and relative representations
``colors``     the colour case study: named colours, CIELAB, PMI, MDS, Kabsch--Umeyama
``plotting``   the book's figures

``pip install prhlib`` installs only what ``metrics`` needs (NumPy, SciPy, PyTorch); the other modules
need an extra (``pip install "prhlib[models]"``, ``[plots]``, ``[book]``, ...) and say which when it is
missing. ``prhlib align A.npy B.npy`` (or ``python -m prhlib``) runs the metrics from the command line.
"""

import importlib

#: The one place the version lives (pyproject.toml, CITATION.cff and the book's "How to cite" read it).
__version__ = "0.1.0"

#: The one place the repository address lives (README, CITATION.cff, _config.yml and the chapters'
#: Colab cells must agree with it; tests/test_publishing.py checks).
REPOSITORY = "https://github.com/prh-hands-on/prh-book"

_SUBMODULES = ("config", "metrics", "world", "zoo", "models", "features", "data", "stitching", "colors",
               "plotting", "crossmodal", "limits", "cli")

__all__ = ["__version__", "REPOSITORY"]  # submodules stay lazy: `from prhlib import *` imports none


def __getattr__(name: str):
    """Import submodules on first use (``import prhlib; prhlib.metrics``): nothing heavy at import time."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
