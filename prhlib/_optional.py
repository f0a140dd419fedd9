"""Optional dependencies: fail on import with the exact command that installs what is missing.

``pip install prhlib`` installs only what :mod:`prhlib.metrics` needs (NumPy, SciPy, PyTorch). The
other modules need an *extra* (see ``pyproject.toml``)::

    from prhlib import _optional
    timm = _optional.require("timm", "models")        # imports timm, or says: pip install "prhlib[models]"
    _optional.ensure(("timm", "transformers"), "models")   # only checks that they are installed

:func:`ensure` does not import anything (it asks :func:`importlib.util.find_spec`), so a module can check
its extra at the top without paying for importing large libraries it loads lazily later.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Iterable

__all__ = ["EXTRAS", "MissingExtraError", "require", "ensure", "install_command"]

#: Extras of the ``prhlib`` distribution (keep in step with pyproject.toml; a test checks).
EXTRAS = ("models", "small", "full", "colour", "plots", "analysis", "book", "colab")

#: Import name -> distribution name, where they differ (for the message only).
_DISTRIBUTIONS = {
    "colour": "colour-science", "skimage": "scikit-image", "sklearn": "scikit-learn", "PIL": "pillow",
    "open_clip": "open_clip_torch", "fontTools": "fonttools", "yaml": "pyyaml",
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency of prhlib is not installed (a :class:`ModuleNotFoundError`, so
    ``except ImportError`` still catches it)."""


def install_command(extra: str) -> str:
    """The shell command that installs ``extra``: ``pip install "prhlib[extra]"``."""
    _check_extra(extra)
    return f'pip install "prhlib[{extra}]"'


def _check_extra(extra: str) -> None:
    if extra not in EXTRAS:
        raise ValueError(f"unknown prhlib extra {extra!r}; choose one of {EXTRAS}")


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _caller() -> str:
    """The prhlib module that asked (two frames up), for the message."""
    name = sys._getframe(2).f_globals.get("__name__", "")
    return name if name.startswith("prhlib") and name != __name__ else "this part of prhlib"


def _error(module: str, extra: str, who: str, cause: BaseException | None = None) -> MissingExtraError:
    dist = _DISTRIBUTIONS.get(_top(module), _top(module))
    detail = f" ({cause})" if cause is not None and _top(module) not in str(cause) else ""
    return MissingExtraError(
        f"{who} needs {dist!r}, which is not installed{detail}. "
        f"Install the {extra!r} extra: {install_command(extra)}",
        name=module,
    )


def require(module: str, extra: str) -> ModuleType:
    """Import and return ``module``, or raise :class:`MissingExtraError` naming the extra to install.

    Parameters
    ----------
    module : str
        Import name, e.g. ``"timm"`` or ``"skimage.color"``.
    extra : str
        The prhlib extra that provides it (one of :data:`EXTRAS`).

    Raises
    ------
    MissingExtraError
        when ``module`` (or a package it needs) is not installed; the message ends with
        ``pip install "prhlib[<extra>]"``.
    ValueError
        for an unknown ``extra``.
    """
    _check_extra(extra)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise _error(module, extra, _caller(), exc) from exc


def ensure(modules: str | Iterable[str], extra: str) -> None:
    """Check that ``modules`` are installed without importing them (raise like :func:`require`)."""
    _check_extra(extra)
    who = _caller()
    for module in [modules] if isinstance(modules, str) else list(modules):
        try:
            found = importlib.util.find_spec(_top(module)) is not None
        except (ImportError, ValueError):  # a broken or half-installed package
            found = False
        if not found:
            raise _error(module, extra, who)
