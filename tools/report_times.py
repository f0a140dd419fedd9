"""Print how long each chapter took to execute, read from the Jupyter Book execution cache."""

from __future__ import annotations

import sys
from pathlib import Path


def main(build_dir: str = "_build") -> None:
    try:
        from jupyter_cache import get_cache
    except ImportError:
        return
    cache_path = Path(build_dir) / ".jupyter_cache"
    if not cache_path.exists():
        return
    cache = get_cache(str(cache_path))
    rows = []
    for record in cache.list_cache_records():
        seconds = (record.data or {}).get("execution_seconds")
        rows.append((Path(record.uri).name, seconds))
    if rows:
        print("[make] chapter execution times (s):")
        for name, seconds in sorted(rows):
            print(f"    {name:<34} {seconds:7.1f}" if seconds is not None else f"    {name:<34}   n/a")


if __name__ == "__main__":
    main(*sys.argv[1:])
