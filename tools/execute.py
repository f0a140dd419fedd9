"""Execute one chapter notebook in place of the book build, and report its time and outputs.

Usage: python tools/execute.py book/01_hypothesis.ipynb [--out /tmp/out.ipynb] [--show]
Exit status 1 if a cell raises. Handy while writing a chapter; `make test` executes them all.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--out", default=None, help="where to write the executed notebook")
    parser.add_argument("--show", action="store_true", help="print text outputs")
    args = parser.parse_args()
    path = Path(args.notebook)
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    print(f"{path.name}: executed in {time.perf_counter() - start:.1f} s")
    if args.out:
        nbformat.write(nb, args.out)
    if args.show:
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    print(out["text"].rstrip())
                elif "text/plain" in out.get("data", {}):
                    print(out["data"]["text/plain"][:1500])


if __name__ == "__main__":
    main()
