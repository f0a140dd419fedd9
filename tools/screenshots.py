"""Render built pages of the book to PNG with headless Chromium, to look at them before calling a chapter done.

Usage (after ``make book`` or ``make test``)::

    python tools/screenshots.py                          # every chapter page, into _build/screenshots
    python tools/screenshots.py 03_model_stitching --out /tmp/shots --part-height 2400

Each page is rendered at website width (1280 px window) with MathJax and plotly.js from local copies (PyPI packages
``django-static-mathjax`` and ``plotly``; the site loads both from CDNs, which an offline machine cannot reach),
then cut into parts of ``--part-height`` pixels (``<page>_partN.png``) that an image viewer shows readably.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_pdf import CDN_MATHJAX, CHROMIUM_FLAGS, find_browser, local_mathjax  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the CDN tag carries integrity and crossorigin attributes, which a file:// page cannot satisfy: drop them too
CDN_PLOTLY = re.compile(r'src="https://cdn\.plot\.ly/plotly-[\d.]+\.min\.js"(\s+integrity="[^"]*")?(\s+crossorigin="[^"]*")?')
MAX_HEIGHT = 40000


def local_plotly() -> Path | None:
    """The plotly.js bundled with the plotly Python package (the site loads it from plotly's CDN)."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def render(browser: str, page: Path, out_png: Path, width: int = 1280, height: int = MAX_HEIGHT) -> None:
    """Screenshot one built page (a copy beside it, so relative assets resolve) into ``out_png``."""
    mathjax = local_mathjax()
    text = page.read_text(encoding="utf-8")
    if mathjax is not None:
        text = CDN_MATHJAX.sub(lambda m: f'src="{(mathjax / (m[1] + ".js")).as_uri()}"', text)
    plotly_js = local_plotly()
    if plotly_js is not None:
        text = CDN_PLOTLY.sub(f'src="{plotly_js.as_uri()}"', text)
    copy = page.with_name(f"_screenshot_{page.name}")
    copy.write_text(text, encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory(prefix="prh-chromium-") as profile:
            cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                   f"--window-size={width},{height}",
                   f"--screenshot={out_png}", copy.as_uri()]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not out_png.is_file():
            raise RuntimeError(f"Chromium could not render {page.name}: {proc.stderr[-500:]}")
    finally:
        copy.unlink(missing_ok=True)


def split(png: Path, part_height: int) -> list[Path]:
    """Cut a full-page screenshot into parts, dropping the blank space between the article and the footer."""
    image = Image.open(png).convert("RGB")
    pixels = np.asarray(image)
    article = pixels[:, int(0.22 * image.width): int(0.78 * image.width)]   # between the two sidebars
    ink = np.where((article < 240).any(axis=(1, 2)))[0]
    bottom = image.height
    gaps = np.flatnonzero(np.diff(ink) > 1200)   # the article ends, blank space, then the page footer
    if gaps.size:
        bottom = int(ink[gaps[0]]) + 40
    parts = []
    for i, top in enumerate(range(0, bottom, part_height)):
        out = png.with_name(f"{png.stem}_part{i}.png")
        image.crop((0, top, image.width, min(bottom, top + part_height))).save(out)
        parts.append(out)
    return parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="page names in _build/html/book (default: every chapter)")
    parser.add_argument("--html", default=str(ROOT / "_build" / "html"))
    parser.add_argument("--out", default=str(ROOT / "_build" / "screenshots"))
    parser.add_argument("--part-height", type=int, default=2400)
    args = parser.parse_args(argv)
    book = Path(args.html).resolve() / "book"
    if not book.is_dir():
        print(f"[screenshots] no built site in {args.html}: run `make book` first", file=sys.stderr)
        return 1
    names = args.pages or sorted(p.stem for p in book.glob("[0-9][0-9]_*.html"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    browser = find_browser()
    for name in names:
        png = out / f"{name}.png"
        render(browser, book / f"{name}.html", png)
        parts = split(png, args.part_height)
        print(f"[screenshots] {name}: {len(parts)} parts in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
