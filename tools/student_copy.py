"""Build a copy of the website without exercise solutions (sphinx-exercise's ``hide_solutions``).

The published book shows every solution as a closed dropdown. For a course where solutions are handed
out later, build a student copy::

    python tools/student_copy.py            # -> _build/student/_build/html (reuses the executed chapters)

It writes ``_build/student/_config.yml`` (the book's ``_config.yml`` plus ``hide_solutions: true``),
copies the execution cache of the last ``make book``/``make test`` (so nothing is executed again when
the chapters have not changed) and runs ``jupyter-book build`` with that configuration. Extra arguments
are passed to ``jupyter-book build`` (the default is ``-W -n --keep-going``, as in the Makefile).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def student_config(config: dict) -> dict:
    """The book's configuration with solutions hidden (a new dict; the input is not modified)."""
    config = yaml.safe_load(yaml.safe_dump(config))
    config.setdefault("sphinx", {}).setdefault("config", {})["hide_solutions"] = True
    return config


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv) or ["-W", "-n", "--keep-going"]
    out = ROOT / "_build" / "student"
    (out / "_build").mkdir(parents=True, exist_ok=True)
    cfg_path = out / "_config.yml"
    cfg_path.write_text(yaml.safe_dump(student_config(yaml.safe_load((ROOT / "_config.yml").read_text())),
                                       sort_keys=False))
    cache = ROOT / "_build" / ".jupyter_cache"
    if cache.exists():
        shutil.rmtree(out / "_build" / ".jupyter_cache", ignore_errors=True)
        shutil.copytree(cache, out / "_build" / ".jupyter_cache")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--builder", "html", "--config", str(cfg_path), "--path-output", str(out),
           *argv]
    print("[student_copy] " + " ".join(cmd))
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode == 0:
        print(f"[student_copy] student copy without solutions: {out / '_build' / 'html' / 'index.html'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
