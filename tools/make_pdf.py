"""Print the built website into one PDF for instructors who print: ``make pdf``.

Every page of ``_toc.yml`` is printed from ``_build/html`` by headless Chromium (the theme's print style
hides the navigation), after a small print style sheet is added to a temporary copy of the page (A4 paper,
the page's title and number in the footer). The pages are then merged with ``pypdf`` behind a generated
cover page that lists the chapters, with one PDF bookmark per page.

Mathematics: the site loads MathJax 3 from a CDN. Offline, the copy of each page points to a local MathJax 3
when the PyPI package ``django-static-mathjax`` (MathJax 3.2.2 only, no dependencies) is installed; otherwise
the CDN is kept, which works wherever there is internet. The script checks the PDF for un-typeset TeX and
says so.

Usage::

    python tools/make_pdf.py [--html _build/html] [--toc _toc.yml] [--config _config.yml]
                             [--out _build/pdf/prh-book.pdf] [--browser PATH] [--timeout 180]
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import yaml

CDN_MATHJAX = re.compile(r'src="https://cdn\.jsdelivr\.net/npm/mathjax@3/es5/(tex-mml-chtml|tex-chtml|tex-svg)\.js"')
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
                  "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
                  "--virtual-time-budget=20000")
# A TeX command left in the page text; a doubled backslash (a Python string in a code cell, "$a^\\top$") is not one.
RAW_TEX = re.compile(r"(?<!\\)(\\(frac|sum|mathrm|operatorname|sqrt|left|right|begin\{|cap|top)\b|\\\[|\\\()")

PRINT_CSS = """
@page {{
  size: A4;
  margin: 16mm 15mm 18mm 15mm;
  @bottom-left {{ content: "{title}"; font: 8pt sans-serif; color: #666; }}
  @bottom-right {{ content: counter(page) " / " counter(pages); font: 8pt sans-serif; color: #666; }}
}}
@media print {{
  html {{ font-size: 90%; }}
  .prev-next-footer, .prev-next-area, .bd-footer, .bd-footer-content, .headerlink, .toggle-button,
  .header-article, .bd-header-article, #pst-back-to-top, .bd-sidebar-secondary {{ display: none !important; }}
  pre, pre code {{ white-space: pre-wrap !important; overflow-wrap: anywhere; }}
  .highlight, div.cell_input, div.cell_output {{ overflow: visible !important; }}
  img, figure, .cell_output, table {{ break-inside: avoid; }}
  h1, h2, h3 {{ break-after: avoid; }}
}}
"""


def toc_docnames(toc_path: str | Path) -> list[str]:
    """Docnames of a Jupyter Book ``_toc.yml`` in reading order (root first), without extension.

    Parameters
    ----------
    toc_path : path to ``_toc.yml``

    Returns
    -------
    list of str, e.g. ``["book/intro", "book/01_hypothesis", ...]``
    """
    toc = yaml.safe_load(Path(toc_path).read_text())
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path} is not a Jupyter Book table of contents (no 'root' key)")
    found = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key) or []:
                    walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb)$", "", d) for d in found]


def find_browser(explicit: str | None = None) -> str:
    """Path of a Chromium-family browser: ``explicit``, ``$CHROMIUM``, or the first of BROWSERS on PATH."""
    for candidate in (explicit, os.environ.get("CHROMIUM")):
        if candidate:
            path = shutil.which(candidate)
            if path is None:
                raise ValueError(f"browser {candidate!r} not found or not executable")
            return path
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise ValueError("no Chromium-family browser found (tried " + ", ".join(BROWSERS) + "); on Debian/Ubuntu run: "
                     "sudo apt-get install -y chromium   (or pass --browser /path/to/chrome)")


def local_mathjax() -> Path | None:
    """``es5`` folder of a local MathJax 3 (from the PyPI package ``django-static-mathjax``), or None."""
    spec = find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        es5 = Path(root) / "static" / "mathjax" / "es5"
        if (es5 / "tex-mml-chtml.js").is_file():
            return es5
    return None


def page_title(page_html: str, site_title: str = "") -> str:
    """Title of a built page from its ``<title>``, without the " -- site title" suffix."""
    match = re.search(r"<title>(.*?)</title>", page_html, re.DOTALL)
    title = html.unescape(match[1]).strip() if match else ""
    for sep in (" \u2014 ", " - ", " | "):
        if site_title and title.endswith(sep + site_title):
            title = title[: -len(sep + site_title)]
    return " ".join(title.split()) or site_title


def css_string(text: str) -> str:
    """``text`` quoted for a CSS string literal."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def prepare_page(page_html: str, footer: str, mathjax_es5: Path | None) -> str:
    """A printable copy of a built page: the print style sheet added, MathJax pointed to a local copy if any."""
    if "</head>" not in page_html:
        raise ValueError("not an HTML page (no </head>)")
    style = "<style>" + PRINT_CSS.format(title=css_string(footer)) + "</style>"
    out = page_html.replace("</head>", style + "\n</head>", 1)
    if mathjax_es5 is not None:
        out = CDN_MATHJAX.sub(lambda m: f'src="{(mathjax_es5 / (m[1] + ".js")).as_uri()}"', out)
    return out


def cover_html(title: str, author: str, url: str, entries: list[tuple[str, int]], logo: Path | None,
               licence: str) -> str:
    """HTML of the cover page: logo, title, author, web address, licence and the contents with page numbers."""
    rows = "\n".join(f"<tr><td>{html.escape(t)}</td><td class='n'>{p}</td></tr>" for t, p in entries)
    img = f"<img src='{logo.resolve().as_uri()}' alt=''>" if logo is not None and logo.is_file() else ""
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
@page {{ size: A4; margin: 22mm 20mm; }}
body {{ font-family: sans-serif; color: #222; }}
img {{ width: 34mm; display: block; margin: 10mm auto 6mm; }}
h1 {{ text-align: center; font-size: 22pt; margin: 0 0 4mm; }}
p.meta {{ text-align: center; margin: 1mm; color: #444; }}
h2 {{ font-size: 13pt; margin-top: 14mm; border-bottom: 1px solid #aaa; }}
table {{ width: 100%; border-collapse: collapse; font-size: 10.5pt; }}
td {{ padding: 1.2mm 0; border-bottom: 1px dotted #ccc; }} td.n {{ text-align: right; width: 20mm; }}
p.small {{ font-size: 8.5pt; color: #555; margin-top: 10mm; }}
</style></head><body>
{img}<h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(author)}</p>
<p class="meta"><a href="{html.escape(url)}">{html.escape(url)}</a></p>
<h2>Contents</h2>
<table>{rows}</table>
<p class="small">{html.escape(licence)} Printed from the website on {time.strftime('%Y-%m-%d')}; the website runs every
chapter's code and is the reference version. Page numbers refer to this PDF.</p>
</body></html>"""


def print_to_pdf(browser: str, page: Path, out_pdf: Path, timeout: float = 180.0) -> None:
    """Print one local HTML file to ``out_pdf`` with headless Chromium; raise RuntimeError if it fails."""
    with tempfile.TemporaryDirectory(prefix="prh-chromium-") as profile:
        cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={out_pdf}", page.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"Chromium took more than {timeout:.0f} s to print {page.name}") from exc
    if proc.returncode != 0 or not out_pdf.is_file() or out_pdf.stat().st_size == 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"Chromium could not print {page.name} (exit {proc.returncode}):\n{tail}")


def untypeset_math(pdf_path: Path) -> list[int]:
    """1-based pages of a PDF whose text still contains raw TeX such as ``\\frac`` or ``\\[``."""
    from pypdf import PdfReader

    return [i + 1 for i, p in enumerate(PdfReader(str(pdf_path)).pages) if RAW_TEX.search(p.extract_text() or "")]


def merge(parts: list[tuple[str, Path]], out: Path, metadata: dict[str, str]) -> int:
    """Concatenate PDFs into ``out`` with one top-level bookmark per part; return the number of pages."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for title, path in parts:
        start = len(writer.pages)
        for page in PdfReader(str(path)).pages:
            writer.add_page(page)
        writer.add_outline_item(title=title, page_number=start)
    writer.add_metadata(metadata)
    writer.page_mode = "/UseOutlines"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        writer.write(fh)
    return len(writer.pages)


def page_count(pdf_path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(str(pdf_path)).pages)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", default="_build/html", help="built website (jupyter-book build . --builder html)")
    parser.add_argument("--toc", default="_toc.yml")
    parser.add_argument("--config", default="_config.yml")
    parser.add_argument("--out", default="_build/pdf/prh-book.pdf")
    parser.add_argument("--browser", default=None, help="Chromium or Chrome executable (default: found on PATH)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed to print one page")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    html_dir, out = Path(args.html), Path(args.out)
    config = yaml.safe_load(Path(args.config).read_text()) if Path(args.config).is_file() else {}
    site_title = str(config.get("title", "")).strip()
    docnames = toc_docnames(args.toc)
    missing = [d for d in docnames if not (html_dir / f"{d}.html").is_file()]
    if missing:
        raise ValueError(f"pages missing from {html_dir}: {missing}; build the site first (make book)")
    browser = find_browser(args.browser)
    mathjax = local_mathjax()
    print(f"[pdf] {len(docnames)} pages, browser {browser}, MathJax "
          + (f"local ({mathjax})" if mathjax else "from the CDN (needs internet)"))

    with tempfile.TemporaryDirectory(prefix="prh-pdf-") as tmp:
        site = Path(tmp) / "html"
        shutil.copytree(html_dir, site)
        parts = []
        for doc in docnames:
            src = site / f"{doc}.html"
            raw = src.read_text(encoding="utf-8")
            title = page_title(raw, site_title)
            printable = src.with_name(src.stem + ".print.html")
            footer = f"{site_title} \u2014 {title}" if site_title and title != site_title else title
            printable.write_text(prepare_page(raw, footer, mathjax), encoding="utf-8")
            pdf = Path(tmp) / (doc.replace("/", "__") + ".pdf")
            t0 = time.perf_counter()
            print_to_pdf(browser, printable, pdf, args.timeout)
            parts.append((title, pdf))
            print(f"[pdf]   {doc:<32} {page_count(pdf):3d} pages  {time.perf_counter() - t0:5.1f} s")

        # cover: contents with the page where each part starts (the cover itself is one page)
        entries, page = [], 2
        for title, pdf in parts:
            entries.append((title, page))
            page += page_count(pdf)
        logo_key = config.get("logo")
        logo = (Path(args.config).parent / logo_key) if logo_key else None
        licence = "Text and figures: CC BY 4.0; code: MIT License."
        cover = Path(tmp) / "cover.html"
        cover.write_text(cover_html(site_title or "Book", str(config.get("author", "")),
                                    str(config.get("html", {}).get("baseurl", "")), entries, logo, licence),
                         encoding="utf-8")
        cover_pdf = Path(tmp) / "cover.pdf"
        print_to_pdf(browser, cover, cover_pdf, args.timeout)
        if page_count(cover_pdf) != 1:
            print(f"[pdf] warning: the cover took {page_count(cover_pdf)} pages; contents page numbers are off")
        total = merge([("Cover and contents", cover_pdf), *parts], out,
                      {"/Title": site_title, "/Author": str(config.get("author", "")),
                       "/Subject": str(config.get("html", {}).get("baseurl", ""))})

    raw_tex = untypeset_math(out)
    if raw_tex:
        print(f"[pdf] warning: mathematics was not typeset on pages {raw_tex[:10]}{'...' if len(raw_tex) > 10 else ''}"
              " (MathJax could not be loaded: install django-static-mathjax, or print with internet access)")
    print(f"[pdf] wrote {out} ({total} pages, {out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.0f} s")
    return out


if __name__ == "__main__":
    try:
        main()
    except (ValueError, RuntimeError) as exc:
        print(f"[pdf] error: {exc}", file=sys.stderr)
        sys.exit(1)
