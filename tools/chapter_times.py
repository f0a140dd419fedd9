"""Write the measured execution time of every chapter as a CSV table for the instructor guide.

The book build executes each chapter through jupyter-cache, which records how long the execution took.
This script reads those records (the newest one per notebook) and writes ``book/_static/chapter_times.csv``,
which ``book/instructor_guide.md`` includes with a ``{csv-table}``: the guide never shows a typed number.

Usage (after ``make test`` or ``make book``, which leave the cache in ``_build/.jupyter_cache``)::

    python tools/chapter_times.py _build                       # print the table
    python tools/chapter_times.py _build -o book/_static/chapter_times.csv

Only times from a complete build of every chapter listed in ``_toc.yml`` are written (``--allow-missing``
overrides), so the table never mixes in stale or partial measurements silently. The caption line records
the machine (CPU count and model) and the date of the measurement.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import os
import platform
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_notebooks(root: Path = ROOT) -> list[str]:
    """Docnames (``book/01_hypothesis``) of every notebook in ``_toc.yml``, in order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node and (root / f"{node['file']}.ipynb").exists():
                found.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)

    walk({"chapters": [{"file": toc["root"]}], **{k: v for k, v in toc.items() if k != "root"}})
    return found


def cached_times(build_dir: Path) -> dict[str, tuple[float, dt.datetime]]:
    """``{notebook stem: (seconds, when)}`` from the newest jupyter-cache record of each notebook."""
    from jupyter_cache import get_cache

    path = Path(build_dir) / ".jupyter_cache"
    if not path.exists():
        raise ValueError(f"{path} does not exist: build the book first (make test or make book)")
    newest: dict[str, tuple[float, dt.datetime]] = {}
    for record in get_cache(str(path)).list_cache_records():
        seconds = (record.data or {}).get("execution_seconds")
        if seconds is None:
            continue
        stem = Path(record.uri).stem
        if stem not in newest or record.created > newest[stem][1]:
            newest[stem] = (float(seconds), record.created)
    return newest


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(build_dir: Path, allow_missing: bool = False) -> str:
    """The CSV text: chapter, seconds, minutes; a final total row."""
    times = cached_times(build_dir)
    chapters = toc_notebooks()
    missing = [doc for doc in chapters if Path(doc).stem not in times]
    if missing and not allow_missing:
        raise ValueError(f"no execution record for {missing} in {build_dir}: build the whole book first")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["chapter", "execution time (s)", "(min)"])
    total = 0.0
    for doc in chapters:
        if Path(doc).stem in times:
            seconds = times[Path(doc).stem][0]
            total += seconds
            writer.writerow([Path(doc).stem, f"{seconds:.0f}", f"{seconds / 60:.1f}"])
    writer.writerow(["all chapters", f"{total:.0f}", f"{total / 60:.1f}"])
    return out.getvalue()


def caption(build_dir: Path, note: str = "") -> str:
    when = max(t for _, t in cached_times(build_dir).values())
    profile = os.environ.get("PRH_PROFILE", "small") or "small"
    text = (f"Measured {when:%Y-%m-%d} by the book build on a machine with {os.cpu_count()} CPU cores "
            f"({cpu_model()}), {profile} profile.")
    return f"{text} {note}".strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", nargs="?", default="_build")
    parser.add_argument("-o", "--output", help="CSV file to write (a .txt with the caption is written beside it)")
    parser.add_argument("--note", default="", help="appended to the caption, e.g. 'Empty feature cache.'")
    parser.add_argument("--allow-missing", action="store_true", help="write even if some chapters lack a record")
    args = parser.parse_args(argv)
    try:
        text = table(Path(args.build_dir), allow_missing=args.allow_missing)
        note = caption(Path(args.build_dir), args.note)
    except ValueError as err:
        print(f"[chapter_times] {err}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(text)
        Path(args.output).with_suffix(".txt").write_text(note + "\n")
        print(f"[chapter_times] wrote {args.output}")
    print(text + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
