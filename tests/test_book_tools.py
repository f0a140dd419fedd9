"""Tests of the book's build tools: ``tools/check_outputs.py`` and ``tools/chapter_times.py``."""

from __future__ import annotations

import base64
import importlib.util
import struct
import zlib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


co = _load("check_outputs")
ct = _load("chapter_times")


def _png(width: int, height: int = 2) -> str:
    """A valid tiny PNG of the given size, base64-encoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def _nb(*outputs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = list(outputs)
    nb.cells = [cell]
    return nb


def test_png_width_reads_the_header():
    assert co.png_width(_png(1234)) == 1234
    with pytest.raises(ValueError, match="PNG"):
        co.png_width(base64.b64encode(b"GIF89a" + b"\x00" * 40).decode())


def test_clean_outputs_pass():
    nb = _nb(nbformat.v4.new_output("stream", name="stdout", text="prhlib 0.1.0 | profile: small\n"),
             nbformat.v4.new_output("display_data", data={"image/png": _png(760), "text/plain": "<Figure>"}))
    assert co.check_notebook(nb, max_px=1197) == ([], [])


@pytest.mark.parametrize("text", ["UserWarning: harmless\n", " 45%|####      | 45/100 [00:01<00:01, 30.2it/s]",
                                  "step 1\rstep 2\r"])
def test_visible_noise_is_fatal(text):
    fatal, _ = co.check_notebook(_nb(nbformat.v4.new_output("stream", name="stdout", text=text)), 1197)
    assert len(fatal) == 1 and "noise" in fatal[0]


def test_stderr_is_a_note_errors_and_wide_figures_are_fatal():
    nb = _nb(nbformat.v4.new_output("stream", name="stderr", text="Some weights were not used\n"),
             nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]),
             nbformat.v4.new_output("display_data", data={"image/png": _png(2000)}))
    fatal, notes = co.check_notebook(nb, max_px=1197)
    assert len(notes) == 1 and "stderr" in notes[0]
    assert any("ValueError" in f for f in fatal) and any("2000 px" in f for f in fatal)


def test_check_outputs_command_line(tmp_path, capsys):
    nbformat.write(_nb(nbformat.v4.new_output("stream", name="stdout", text="ok\n")), tmp_path / "a.ipynb")
    assert co.main([str(tmp_path)]) == 0
    nbformat.write(_nb(nbformat.v4.new_output("stream", name="stderr", text="warn\n")), tmp_path / "b.ipynb")
    assert co.main([str(tmp_path)]) == 0
    assert co.main([str(tmp_path), "--strict"]) == 1
    assert co.main([str(tmp_path / "empty")]) == 1


def test_toc_notebooks_lists_the_chapters_in_order():
    chapters = ct.toc_notebooks()
    assert chapters == sorted(chapters) and all((ROOT / f"{c}.ipynb").exists() for c in chapters)
    assert "book/01_hypothesis" in chapters


def test_chapter_times_needs_a_build(tmp_path):
    with pytest.raises(ValueError, match="build the book first"):
        ct.cached_times(tmp_path)


def test_chapter_times_table_from_a_cache(tmp_path, monkeypatch):
    import datetime as dt

    when = dt.datetime(2026, 1, 2)
    fake = {Path(c).stem: (61.0 + i, when) for i, c in enumerate(ct.toc_notebooks())}
    monkeypatch.setattr(ct, "cached_times", lambda build_dir: fake)
    text = ct.table(tmp_path)
    rows = [line.split(",") for line in text.strip().splitlines()]
    assert rows[0][0] == "chapter" and rows[-1][0] == "all chapters"
    assert float(rows[-1][1]) == pytest.approx(sum(s for s, _ in fake.values()), abs=1)
    assert rows[1][1:] == ["61", "1.0"]
    assert "2026-01-02" in ct.caption(tmp_path)
    del fake[next(iter(fake))]
    with pytest.raises(ValueError, match="no execution record"):
        ct.table(tmp_path)
    assert "all chapters" in ct.table(tmp_path, allow_missing=True)


def test_student_config_hides_solutions_without_touching_the_book_config():
    sc = _load("student_copy")
    import yaml

    book = yaml.safe_load((ROOT / "_config.yml").read_text())
    student = sc.student_config(book)
    assert student["sphinx"]["config"]["hide_solutions"] is True
    assert "hide_solutions" not in book["sphinx"]["config"]
    assert student["bibtex_bibfiles"] == book["bibtex_bibfiles"]


def test_text_only_figures_are_fatal():
    nb = _nb(nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 760x360 with 1 Axes>"}))
    fatal, _ = co.check_notebook(nb, max_px=1197)
    assert len(fatal) == 1 and "inline backend" in fatal[0]
    ok = _nb(nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 760x360 with 1 Axes>",
                                                          "image/png": _png(760)}))
    assert co.check_notebook(ok, max_px=1197) == ([], [])


@pytest.mark.parametrize("text", ["<matplotlib.legend.Legend at 0x7fad07559650>",
                                  "Text(0.5, 1.0, 'title')", "[<matplotlib.lines.Line2D at 0x7f00>]"])
def test_plotting_object_reprs_are_fatal(text):
    nb = _nb(nbformat.v4.new_output("execute_result", data={"text/plain": text}, execution_count=1))
    fatal, _ = co.check_notebook(nb, max_px=1197)
    assert len(fatal) == 1 and "object repr" in fatal[0]


def test_rich_outputs_with_an_object_repr_are_fine():
    # a pandas Styler has a repr as text/plain but the site shows its HTML
    nb = _nb(nbformat.v4.new_output("execute_result", execution_count=1,
                                    data={"text/plain": "<pandas.io.formats.style.Styler at 0x7f8e>",
                                          "text/html": "<table></table>"}))
    assert co.check_notebook(nb, max_px=1197) == ([], [])
