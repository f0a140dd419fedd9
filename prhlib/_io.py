"""One atomic file writer: a reader never sees a half-written file.

:func:`atomic_write` writes to a temporary file in the destination's folder, flushes and ``fsync``\\ s
it, then renames it over the destination with :func:`os.replace` (atomic on POSIX and Windows for
paths on one file system). A killed writer leaves at most a stale ``.<name>.<random>.tmp`` file,
matched by :data:`TMP_GLOB`, which a cache cleaner can remove.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO

__all__ = ["atomic_write", "TMP_SUFFIX", "TMP_GLOB"]

#: Suffix of the temporary files :func:`atomic_write` creates.
TMP_SUFFIX = ".tmp"
#: Glob matching stale temporary files left by killed writers (for ``clear_cache``).
TMP_GLOB = ".*" + TMP_SUFFIX


def atomic_write(path, write_fn: Callable[[IO[bytes]], object], mode: str = "wb") -> Path:
    """Create or replace ``path`` atomically with what ``write_fn(file)`` writes.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    write_fn : callable
        Called with an open file object (binary unless ``mode="w"``); writes the content.
    mode : {"wb", "w"}
        Binary or text (UTF-8).

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    On any exception the temporary file is removed and the destination is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
