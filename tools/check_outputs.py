"""Check executed chapters for output noise: warnings, progress bars, errors, oversized figures.

The website shows every output a chapter's code prints. This script scans the executed notebooks the
build leaves in ``_build/jupyter_execute`` and reports, per cell:

* error outputs (should never happen: the build stops on them);
* warnings or progress bars in visible output (stdout, text/plain, text/html): ``Warning:``,
  ``warnings.warn``, tqdm bars (``it/s]``, ``%|``), carriage-return animations;
* stderr streams: hidden on the website (``nb_output_stderr: remove``) but a sign of noise a reader
  running the notebook will see; reported, and fatal with ``--strict``;
* figures wider than the page (PNG width above ``--max-px``, default 7.6 in x 150 dpi + 5 %);
* plotting objects shown as their repr (``<matplotlib.legend.Legend at 0x...>``, ``Text(0.5, ...)``);
* figures shown as text only (``<Figure size ...>`` without an image: the kernel was not using the inline
  backend, e.g. because it started with ``MPLBACKEND=Agg``).

Usage::

    python tools/check_outputs.py _build/jupyter_execute [--strict]

Exit status 1 when something fatal is found.
"""

from __future__ import annotations

import argparse
import base64
import re
import struct
import sys
from pathlib import Path

NOISE = re.compile(r"(\bWarning\b:|warnings\.warn|UserWarning|FutureWarning|DeprecationWarning|it/s\]|s/it\]|"
                   r"\d+%\|)")
#: The repr of a plotting object left as a cell's last expression, e.g. ``<matplotlib.legend.Legend at 0x7f...>``
#: or ``Text(0.5, 1.0, 'title')``: end the cell with ``plt.show()`` or assign the result.
OBJECT_REPR = re.compile(r"^(\[?<[A-Za-z_][\w.]* (object )?at 0x[0-9a-fA-F]+>|Text\(-?[\d.]+, -?[\d.]+, )")


def _text(output) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        data = output.get("data", {})
        text = data.get("text/plain", "") or data.get("text/html", "")
    return "".join(text) if isinstance(text, list) else str(text)


def png_width(b64: str) -> int:
    """Pixel width of a base64 PNG (read from its IHDR chunk)."""
    raw = base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4))
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">I", raw[16:20])[0]


def check_notebook(nb, max_px: int) -> tuple[list[str], list[str]]:
    """(fatal problems, notes) for one executed notebook."""
    fatal, notes = [], []
    code_index = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        code_index += 1
        where = f"code cell {code_index}"
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "error":
                fatal.append(f"{where}: error {output.get('ename')}: {output.get('evalue')}")
                continue
            if (output.get("metadata") or {}).get("scrapbook"):
                continue  # glued values are pasted, not shown
            if kind == "stream" and output.get("name") == "stderr":
                notes.append(f"{where}: stderr (hidden on the site): {_text(output).strip()[:120]!r}")
                continue
            text = _text(output)
            match = NOISE.search(text)
            if match or "\r" in text:
                fatal.append(f"{where}: visible noise {(match[0] if match else 'carriage return')!r}: "
                             f"{text.strip()[:160]!r}")
            data = output.get("data") or {}
            if kind == "execute_result" and set(data) <= {"text/plain"} and OBJECT_REPR.match(text.strip()):
                fatal.append(f"{where}: an object repr as output ({text.strip()[:60]!r}): end the cell with "
                             "plt.show() or assign the last expression")
            if text.startswith("<Figure size") and not any(m.startswith("image/") for m in data):
                fatal.append(f"{where}: a figure rendered as text only ({text.strip()[:60]!r}): start the "
                             "kernel without MPLBACKEND=Agg so that matplotlib uses the inline backend")
            png = data.get("image/png")
            if png:
                width = png_width(png if isinstance(png, str) else "".join(png))
                if width > max_px:
                    fatal.append(f"{where}: figure {width} px wide (> {max_px} px: wider than the page)")
    return fatal, notes


def main(argv=None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="_build/jupyter_execute")
    parser.add_argument("--strict", action="store_true", help="stderr output is fatal too")
    parser.add_argument("--max-px", type=int, default=round(7.6 * 150 * 1.05))
    args = parser.parse_args(argv)
    paths = sorted(Path(args.folder).rglob("*.ipynb"))
    if not paths:
        print(f"[check_outputs] no executed notebooks under {args.folder}: build the book first", file=sys.stderr)
        return 1
    failed = False
    for path in paths:
        fatal, notes = check_notebook(nbformat.read(path, as_version=4), args.max_px)
        if args.strict:
            fatal, notes = fatal + notes, []
        for line in fatal:
            print(f"[check_outputs] {path.name}: {line}")
        for line in notes:
            print(f"[check_outputs] note {path.name}: {line}")
        failed |= bool(fatal)
    print(f"[check_outputs] {len(paths)} notebooks: " + ("problems found" if failed else "clean"))
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
