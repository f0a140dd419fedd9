"""Glued values of executed notebooks: extract them, compare two runs, re-execute and compare.

Every number in the book's prose is pasted from a ``myst_nb.glue`` call, so "executing the book twice gives
identical numbers" means "the glued values of two executions are identical". This tool checks that.

Usage::

    # the values glued by an executed book (make test / make book leave them in _build/jupyter_execute)
    python tools/glued_values.py dump _build/jupyter_execute -o run1.json
    python tools/glued_values.py compare run1.json run2.json
    python tools/glued_values.py compare run1.json run2.json --skip-machine   # without timings and memory

    # re-execute chapters in fresh kernels and compare with the build's own execution (one extra run each) ...
    python tools/glued_values.py rerun book/01_hypothesis.ipynb --against _build/jupyter_execute
    # ... or execute them twice here (no build needed); --fresh-cache also recomputes cached features/models
    python tools/glued_values.py rerun book/01_hypothesis.ipynb --times 2 --fresh-cache

Exit status 0 when every compared value is identical, 1 otherwise (the differing keys are printed).
A value is the ``text/plain`` representation glue stored (what ``{glue:text}`` formats); a glued figure
or other rich output without ``text/plain`` is compared by a SHA-256 of its first MIME payload.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

GLUE_PREFIX = "application/papermill.record/"


def extract(notebook) -> dict[str, str]:
    """Glued values of one executed notebook.

    Parameters
    ----------
    notebook : nbformat.NotebookNode or dict
        An executed notebook (format 4).

    Returns
    -------
    dict
        ``{key: value}`` with ``value`` the stored ``text/plain`` string, else ``"sha256:<hex>"`` of the
        first stored MIME payload.

    Raises
    ------
    ValueError
        if a key is glued twice (the book build warns about that too).
    """
    values: dict[str, str] = {}
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            scrap = (output.get("metadata") or {}).get("scrapbook")
            if not scrap:
                continue
            key = scrap["name"]
            if key in values:
                raise ValueError(f"glue key {key!r} is glued more than once")
            prefix = scrap.get("mime_prefix", "")
            data = {mime[len(prefix):] if mime.startswith(prefix) else mime: payload
                    for mime, payload in (output.get("data") or {}).items()}
            values[key] = _value(data)
    return values


def _value(data: dict) -> str:
    if "text/plain" in data:
        text = data["text/plain"]
        return "".join(text) if isinstance(text, list) else str(text)
    if not data:
        return ""
    payload = next(iter(sorted(data.items())))[1]
    if not isinstance(payload, str):
        payload = json.dumps(payload, sort_keys=True)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def _notebooks(paths) -> list[Path]:
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb" and path.exists():
            found.append(path)
        else:
            raise ValueError(f"{path}: not a notebook or a folder of notebooks")
    return found


def _name(path: Path) -> str:
    return path.stem


def dump(paths) -> dict[str, dict[str, str]]:
    """``{notebook stem: {key: value}}`` for every executed notebook under ``paths``."""
    import nbformat

    result = {}
    for path in _notebooks(paths):
        values = extract(nbformat.read(path, as_version=4))
        sidecar = path.with_suffix(".glue.json")   # myst-nb >= 1.2 moves glued outputs out of the notebook
        if sidecar.is_file():
            outputs = json.loads(sidecar.read_text())
            values.update(extract({"cells": [{"cell_type": "code", "outputs": list(outputs.values())}]}))
        if values:
            result[_name(path)] = values
    return result


#: Glue keys that measure the machine rather than the models (timings, memory, benchmark ratios): they
#: legitimately differ between two executions, and ``compare --skip-machine`` leaves them out.
MACHINE_KEYS = re.compile(r"(_bench_|_elapsed|_peak_gb|_train_total|_train_max|_seconds)")


def compare(a: dict, b: dict, only: list[str] | None = None, skip: re.Pattern | None = None) -> list[str]:
    """Differences between two dumps, as readable lines (empty when identical).

    ``only`` restricts the comparison to these notebook stems; keys matching ``skip`` are not compared.
    """
    names = sorted(set(a) | set(b)) if only is None else sorted(only)
    problems = []
    for name in names:
        va, vb = a.get(name), b.get(name)
        if va is None or vb is None:
            problems.append(f"{name}: present in only one run")
            continue
        for key in sorted(set(va) | set(vb)):
            if skip is not None and skip.search(key):
                continue
            if key not in va or key not in vb:
                problems.append(f"{name}: {key!r} glued in only one run")
            elif va[key] != vb[key]:
                problems.append(f"{name}: {key!r} differs: {va[key]!r} != {vb[key]!r}")
    return problems


def execute(path: Path, timeout: int = 1200, cache_dir: str | None = None) -> tuple[dict[str, str], float]:
    """Execute a notebook in a fresh kernel (working directory: its folder, as the book build does).

    Returns its glued values and the wall time in seconds. ``cache_dir`` overrides ``PRH_CACHE_DIR``.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("PRH_CACHE_DIR")
    if cache_dir is not None:
        os.environ["PRH_CACHE_DIR"] = cache_dir
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
        seconds = time.perf_counter() - start
    finally:
        if cache_dir is not None:
            if old is None:
                os.environ.pop("PRH_CACHE_DIR", None)
            else:
                os.environ["PRH_CACHE_DIR"] = old
    return extract(nb), seconds


def rerun(paths, times: int = 2, against: str | None = None, fresh_cache: bool = False,
          log=print, skip: re.Pattern | None = None) -> list[str]:
    """Execute notebooks ``times`` times (or once, compared with ``against``) and compare glued values."""
    if against is not None:
        reference = json.loads(Path(against).read_text()) if against.endswith(".json") else dump([against])
    problems = []
    for path in _notebooks(paths):
        runs = []
        for _ in range(1 if against is not None else times):
            tmp = tempfile.mkdtemp(prefix="prh-cache-") if fresh_cache else None
            try:
                values, seconds = execute(path, cache_dir=tmp)
            finally:
                if tmp:
                    shutil.rmtree(tmp, ignore_errors=True)
            log(f"[glued_values] executed {path} in {seconds:.1f} s: {len(values)} glued values")
            runs.append({_name(path): values})
        if not runs[0][_name(path)]:
            problems.append(f"{_name(path)}: no glued values at all")
        baseline = runs[0]
        if against is not None:
            baseline = reference
            if _name(path) not in reference and len(reference) == 1:  # a dump of one notebook, other name
                baseline = {_name(path): next(iter(reference.values()))}
        for other in (runs if against is not None else runs[1:]):
            problems.extend(compare(baseline, other, only=[_name(path)], skip=skip))
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_dump = sub.add_parser("dump", help="write the glued values of executed notebooks as JSON")
    p_dump.add_argument("paths", nargs="+")
    p_dump.add_argument("-o", "--output", help="JSON file (default: standard output)")
    p_cmp = sub.add_parser("compare", help="compare two JSON dumps")
    p_cmp.add_argument("a")
    p_cmp.add_argument("b")
    p_cmp.add_argument("--skip-machine", action="store_true",
                       help="leave out glued timings, memory and benchmark ratios (MACHINE_KEYS)")
    p_run = sub.add_parser("rerun", help="execute notebooks and compare their glued values")
    p_run.add_argument("paths", nargs="+")
    p_run.add_argument("--times", type=int, default=2, help="executions per notebook (default 2)")
    p_run.add_argument("--against", help="compare one execution with an executed folder or a JSON dump")
    p_run.add_argument("--skip-machine", action="store_true",
                       help="leave out glued timings, memory and benchmark ratios (MACHINE_KEYS)")
    p_run.add_argument("--fresh-cache", action="store_true",
                       help="give every execution an empty PRH_CACHE_DIR (recomputes features and models)")
    args = parser.parse_args(argv)

    if args.cmd == "dump":
        text = json.dumps(dump(args.paths), indent=1, sort_keys=True)
        if args.output:
            Path(args.output).write_text(text + "\n")
            print(f"[glued_values] wrote {args.output}")
        else:
            print(text)
        return 0
    if args.cmd == "compare":
        a, b = (json.loads(Path(p).read_text()) for p in (args.a, args.b))
        skip = MACHINE_KEYS if args.skip_machine else None
        problems = compare(a, b, skip=skip)
        n = sum(1 for v in a.values() for key in v if skip is None or not skip.search(key))
    else:
        if args.against is None and args.times < 2:
            parser.error("rerun needs --times >= 2 or --against")
        problems = rerun(args.paths, times=args.times, against=args.against, fresh_cache=args.fresh_cache,
                         skip=MACHINE_KEYS if args.skip_machine else None)
        n = None
    for line in problems:
        print(f"[glued_values] DIFFERENT {line}")
    if problems:
        print(f"[glued_values] {len(problems)} glued values differ between executions")
        return 1
    print("[glued_values] identical" + (f": {n} glued values" if n is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
