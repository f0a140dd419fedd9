"""Book-wide checks that need no execution: notebook hygiene, launch URLs, exercises, glue, glossary, toc.

Every chapter notebook listed in ``_toc.yml`` must

* be stored without outputs or execution counts (outputs are produced by the book build);
* open with a markdown cell holding the title, "Learning objectives" and "Estimated time";
* have, as its first code cell, the Colab install cell tagged ``hide-output`` and, as its second,
  the ``config.setup(...)`` call;
* contain 2--4 ``{exercise}`` directives, each with a ``:label:`` and a matching ``{solution}`` shown as a
  dropdown, and at least one exercise asking the reader to *predict* the result of a code change;
* glue every number its prose pastes with ``{glue:text}`` (and type no alignment numbers by hand);
* keep figures no wider than the website (``plotting.FULL_WIDTH`` = 7.6 in).

Book-wide: every toc entry exists and every page is in the toc; Colab and Binder launch URLs, built from
``_config.yml`` exactly the way Jupyter Book 1 (sphinx-book-theme) builds them, point to notebooks that
exist; every ``{term}`` is in the glossary; every ``{cite}`` key is in ``references.bib``; every prhlib
module appears in the API reference; the instructor guide covers every chapter.

Failure messages name the notebook and what to fix, so that a chapter still being written fails with a
clear to-do list rather than a stack trace.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
FULL_WIDTH = 7.6  # inches; prhlib.plotting.FULL_WIDTH (not imported: that would import matplotlib/seaborn)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def toc_files(toc: dict = TOC) -> list[str]:
    """Every ``file:`` entry of a Jupyter Book ``_toc.yml`` (root first), in order, without extension."""
    found = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def resolve(docname: str) -> Path | None:
    """The source file of a toc entry (``.ipynb`` preferred, then ``.md``), or None."""
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{docname}{suffix}"
        if path.exists():
            return path
    return None


def chapter_docnames() -> list[str]:
    return [doc for doc in toc_files() if (ROOT / f"{doc}.ipynb").exists()]


def read_nb(docname: str) -> nbformat.NotebookNode:
    with warnings.catch_warnings():  # placeholder notebooks without cell ids are still valid for the build
        warnings.simplefilter("ignore")
        return nbformat.read(ROOT / f"{docname}.ipynb", as_version=4)


def markdown_text(docname: str) -> str:
    """All markdown of a page: the markdown cells of a notebook, or the whole ``.md`` file."""
    path = resolve(docname)
    if path is None:
        return ""
    if path.suffix == ".md":
        return path.read_text()
    nb = read_nb(docname)
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def code_text(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")


def directives(markdown: str) -> list[dict]:
    """MyST directives (backtick or colon fences) as dicts: name, argument, options, body.

    Nested directives are found too (a ``{solution}`` may contain a code block).
    """
    lines = markdown.splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence = match["fence"]
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j])
            j += 1
        options = {}
        for line in body:
            opt = re.match(r"^:(\w[\w-]*):\s*(.*)$", line.strip())
            if not opt:
                break
            options[opt[1]] = opt[2].strip()
        found.append(dict(name=match["name"], arg=match["arg"].strip(), options=options, body="\n".join(body)))
        found.extend(directives("\n".join(body)))  # nested
        i = j + 1
    return found


def colab_and_binder_urls(docname: str, config: dict = CONFIG) -> dict[str, tuple[str, str]]:
    """Launch URLs as sphinx-book-theme 1.x builds them, with the repository path each points to.

    Mirrors ``sphinx_book_theme.header_buttons.launch.add_launch_buttons``: ``path_to_book`` (theme option
    ``path_to_docs``) is stripped of slashes and prefixed to ``<docname>.ipynb``; the branch defaults to
    ``master``; Colab gets ``{colab_url}/github/{org}/{repo}/blob/{branch}/{path}``, Binder gets
    ``{binderhub_url}/v2/gh/{org}/{repo}/{branch}?urlpath={tree|lab/tree}/{path}``.
    """
    repo_cfg = config.get("repository", {})
    launch = config.get("launch_buttons", {})
    url = repo_cfg["url"]
    org, repo = url.split("github.com/")[-1].split("/")[:2]
    branch = repo_cfg.get("branch") or "master"
    book_rel = str(repo_cfg.get("path_to_book", "")).strip("/")
    if book_rel:
        book_rel += "/"
    path = f"{book_rel}{docname}.ipynb"
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[launch.get("notebook_interface", "classic")]
    urls = {}
    if launch.get("colab_url"):
        urls["colab"] = (f"{launch['colab_url'].strip('/')}/github/{org}/{repo}/blob/{branch}/{path}", path)
    if launch.get("binderhub_url"):
        urls["binder"] = (f"{launch['binderhub_url'].strip('/')}/v2/gh/{org}/{repo}/{branch}?urlpath={ui}/{path}",
                          path)
    return urls


def glue_keys_used(markdown: str) -> set[str]:
    """Keys pasted by ``{glue...}`` roles and directives (same-document ones; ``doc::key`` are skipped)."""
    keys = set()
    for role, text in re.findall(r"\{glue(:[a-z]*)?\}`([^`]+)`", markdown):
        if "::" in text:
            continue
        if role == ":text" and ":" in text:
            text = text.rsplit(":", 1)[0]
        keys.add(text.strip())
    for d in directives(markdown):
        if d["name"] in ("glue", "glue:", "glue:any", "glue:figure", "glue:math", "glue:md") and "::" not in d["arg"]:
            keys.add(d["arg"].strip())
    return keys


GLUE_CALL = re.compile(r"\bglue\(\s*(?P<f>[fF]?)(?P<q>['\"])(?P<name>.*?)(?P=q)")
GLUE_CALL_ANY = re.compile(r"\bglue\(\s*(?P<first>[^,)]*)")


def glue_keys_defined(code: str) -> tuple[set[str], list[re.Pattern], bool]:
    """Literal glue keys, f-string key patterns, and whether some glue call has a non-literal key."""
    literal, patterns = set(), []
    for m in GLUE_CALL.finditer(code):
        if m["f"]:
            pieces = re.split(r"\{[^}]*\}", m["name"])
            patterns.append(re.compile("^" + ".+".join(re.escape(p) for p in pieces) + "$"))
        else:
            literal.add(m["name"])
    dynamic = any(not re.match(r"^[fF]?['\"]", m["first"].strip()) and m["first"].strip()
                  for m in GLUE_CALL_ANY.finditer(code) if not code[:m.start()].endswith("def "))
    return literal, patterns, dynamic


ALIGNMENT_WORDS = re.compile(
    r"align|mutual|k-?nn|cka|cknna|svcca|rsa\b|procrustes|score|correlat|accuracy|penalty|chance|calibrat",
    re.IGNORECASE)
LITERATURE_WORDS = re.compile(r"\{cite|paper|report|publish|\bfig\.|figure \d|table \d|et al", re.IGNORECASE)
DECIMAL = re.compile(r"(?<![\w.$\\])(?:\d+\.\d+|\.\d+)(?![\w.])")


def hand_typed_numbers(markdown: str) -> list[str]:
    """Sentences of prose that type a decimal number next to an alignment word without citing a source.

    Code blocks, inline code, math, MyST roles and directive options are removed first; numbers quoted
    from the literature (a sentence with ``{cite}``, "paper", "reported", ...) are allowed.
    """
    text = re.sub(r"^(`{3,})(?!\{(exercise|solution|note|admonition|tip|warning|important)).*?^\1\s*$", " ",
                  markdown, flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.DOTALL)
    text = re.sub(r"\$[^$\n]+\$", " ", text)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", text)  # roles, e.g. {glue:text}`x:.3f`
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"^\s*:[\w-]+:.*$", " ", text, flags=re.MULTILINE)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    offenders = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z(])|\n\s*\n|\n\s*[-*] ", text):
        if DECIMAL.search(sentence) and ALIGNMENT_WORDS.search(sentence) and not LITERATURE_WORDS.search(sentence):
            offenders.append(" ".join(sentence.split())[:160])
    return offenders


def glossary_terms() -> set[str]:
    """Lower-cased terms defined in ``book/glossary.md`` (Sphinx matches terms case-insensitively)."""
    terms = set()
    for d in directives((ROOT / "book" / "glossary.md").read_text()):
        if d["name"] != "glossary":
            continue
        for line in d["body"].splitlines():
            if line.strip() and not line.startswith((" ", "\t")):
                terms.add(" ".join(line.strip().lower().split()))
    return terms


def term_references(markdown: str) -> set[str]:
    refs = set()
    for text in re.findall(r"\{term\}`([^`]+)`", markdown):
        target = re.search(r"<([^>]+)>\s*$", text)
        refs.add(" ".join((target[1] if target else text).strip().lower().split()))
    return refs


def bib_keys() -> set[str]:
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", (ROOT / "book" / "references.bib").read_text()))


def cite_keys(markdown: str) -> set[str]:
    keys = set()
    for text in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", markdown):
        keys.update(k.strip() for k in text.split(",") if k.strip())
    return keys


CHAPTERS = chapter_docnames()
ALL_PAGES = [doc for doc in toc_files() if resolve(doc) is not None]


# --------------------------------------------------------------------------------------------------
# tests of the helpers themselves (so that the checks below can fail for the right reasons)
# --------------------------------------------------------------------------------------------------
def test_directive_parser_finds_exercises_solutions_and_nesting():
    md = ("```{exercise} Predict\n:label: ex-a\nChange k and predict.\n```\n\n"
          "````{solution} ex-a\n:class: dropdown\nText\n```python\nx = 1\n```\n````\n"
          ":::{exercise} Colon form\n:label: ex-b\nBody\n:::\n")
    found = [(d["name"], d["arg"], d["options"]) for d in directives(md)]
    assert ("exercise", "Predict", {"label": "ex-a"}) in found
    assert ("solution", "ex-a", {"class": "dropdown"}) in found
    assert ("exercise", "Colon form", {"label": "ex-b"}) in found


def test_glue_parsers_match_myst_nb_syntax():
    md = "A {glue:text}`ch_a:.3f`, {glue:}`ch_b`, {glue}`ch_c`, {glue:text}`other.ipynb::x:.2f`.\n" \
         "```{glue:figure} ch_fig\n:name: fig-x\nCaption\n```\n"
    assert glue_keys_used(md) == {"ch_a", "ch_b", "ch_c", "ch_fig"}
    literal, patterns, dynamic = glue_keys_defined(
        'glue("ch_a", 1, display=False)\nglue(f"score_{name}", s)\nfor k, v in d.items():\n    glue(k, v)\n')
    assert literal == {"ch_a"} and patterns[0].match("score_cka") and dynamic
    assert glue_keys_defined("glue('x', 2)")[2] is False


def test_hand_typed_number_detector():
    assert hand_typed_numbers("The mutual k-NN score is 0.23, far above chance.")
    assert not hand_typed_numbers("The mutual k-NN score is {glue:text}`s:.2f`, far above chance.")
    assert not hand_typed_numbers("The paper reports a mutual k-NN of 0.16 {cite}`huh2024platonic`.")
    assert not hand_typed_numbers("Set $\\alpha = 0.05$ for the calibrated score.")
    assert not hand_typed_numbers("```python\nscore = 0.5\n```\nNothing typed here.")
    assert not hand_typed_numbers("Training takes 2.5 seconds.")


def test_launch_url_builder_matches_sphinx_book_theme():
    cfg = {"repository": {"url": "https://github.com/o/r", "branch": "main", "path_to_book": "docs/"},
           "launch_buttons": {"colab_url": "https://colab.research.google.com",
                              "binderhub_url": "https://mybinder.org/", "notebook_interface": "jupyterlab"}}
    urls = colab_and_binder_urls("book/x", cfg)
    assert urls["colab"][0] == "https://colab.research.google.com/github/o/r/blob/main/docs/book/x.ipynb"
    assert urls["binder"][0] == "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/docs/book/x.ipynb"


# --------------------------------------------------------------------------------------------------
# toc, config and book-wide pages
# --------------------------------------------------------------------------------------------------
def test_every_toc_entry_exists():
    missing = [doc for doc in toc_files() if resolve(doc) is None]
    assert not missing, f"_toc.yml lists files that do not exist (neither .ipynb nor .md): {missing}"


def test_every_book_page_is_in_the_toc():
    listed = set(toc_files())
    pages = sorted(str(p.relative_to(ROOT).with_suffix(""))
                   for p in (ROOT / "book").glob("*") if p.suffix in (".ipynb", ".md"))
    orphans = [p for p in pages if p not in listed]
    assert not orphans, f"pages in book/ missing from _toc.yml (only_build_toc_files skips them): {orphans}"


def test_book_has_chapters():
    assert len(CHAPTERS) >= 7, f"expected the 7 chapter notebooks in _toc.yml, found {CHAPTERS}"


def test_bibliography_is_configured():
    assert "book/references.bib" in CONFIG.get("bibtex_bibfiles", []), "_config.yml: bibtex_bibfiles"
    assert "```{bibliography}" in (ROOT / "book" / "references.md").read_text()
    assert "sphinx_exercise" in CONFIG["sphinx"]["extra_extensions"]


def test_launch_buttons_are_configured_for_colab_and_binder():
    launch = CONFIG.get("launch_buttons", {})
    assert launch.get("colab_url"), "_config.yml launch_buttons: colab_url is missing (no Colab button)"
    assert launch.get("binderhub_url"), "_config.yml launch_buttons: binderhub_url is missing (no Binder button)"
    assert "github.com/" in CONFIG["repository"]["url"], "Colab launch buttons need a GitHub repository url"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_launch_urls_point_to_existing_notebooks(docname):
    urls = colab_and_binder_urls(docname)
    assert set(urls) == {"colab", "binder"}
    for provider, (url, path) in urls.items():
        parts = path.split("/")
        assert "." not in parts and ".." not in parts and "" not in parts, (
            f"{provider} URL {url} contains a non-canonical path {path!r}: Colab and GitHub look the path up "
            "literally. Set repository.path_to_book in _config.yml to the book folder relative to the repository "
            "root without './' (for a book at the root: remove the key or set it to '').")
        assert (ROOT / path).is_file(), f"{provider} URL {url} points to {path}, which is not in the repository"


def test_built_site_launch_links_point_to_existing_notebooks():
    """If a site was built, check the launch links the theme actually rendered."""
    html_dir = ROOT / "_build" / "html"
    pages = sorted(html_dir.glob("book/*.html")) if html_dir.exists() else []
    if not pages:
        pytest.skip("no built site in _build/html (run `make book`); the config-based check above still ran")
    found = 0
    for page in pages:
        for url in re.findall(r'href="(https://colab\.research\.google\.com/github/[^"]+)"', page.read_text()):
            path = url.split("/blob/", 1)[1].split("/", 1)[1]
            assert (ROOT / path).is_file() and "/./" not in f"/{path}", f"{page.name}: Colab link {url}"
            found += 1
    assert found, "the built site has no Colab launch buttons"


def test_glossary_defines_the_book_terms():
    needed = ["kernel", "mutual k-nn", "cka", "unbiased cka", "cknna", "svcca", "rsa", "procrustes",
              "chance level", "permutation calibration", "maxt", "model stitching", "stitching penalty",
              "relative representation", "information asymmetry", "gallery size", "platonic representation",
              "pmi", "mds", "cielab", "aristotelian view"]
    missing = [t for t in needed if t not in glossary_terms()]
    assert not missing, f"book/glossary.md does not define {missing}"


@pytest.mark.parametrize("docname", ALL_PAGES)
def test_term_references_are_in_the_glossary(docname):
    unknown = sorted(term_references(markdown_text(docname)) - glossary_terms())
    assert not unknown, (f"{docname}: {{term}} references not defined in book/glossary.md: {unknown} "
                         "(add them to the glossary or use an existing spelling)")


def display_math_inside_paragraphs(markdown: str) -> list[str]:
    """``$$...$$`` blocks not separated from the text by blank lines (MyST then typesets them as broken
    inline maths that swallows the rest of the paragraph)."""
    bad = []
    for m in re.finditer(r"\$\$(.+?)\$\$", markdown, re.S):
        before, after = markdown[:m.start()], markdown[m.end():]
        starts = before == "" or before.endswith("\n\n")
        ends = after.strip(" ") == "" or after.lstrip(" ").startswith("\n\n") or after.lstrip(" ") == "\n"
        if not (starts and ends):
            bad.append(m[0][:60])
    return bad


def test_display_math_detector():
    assert display_math_inside_paragraphs("text\n\n$$x$$\n\nmore") == []
    assert display_math_inside_paragraphs("text\n$$x$$\nmore") == ["$$x$$"]


@pytest.mark.parametrize("docname", ALL_PAGES)
def test_display_math_stands_alone(docname):
    bad = display_math_inside_paragraphs(markdown_text(docname))
    assert not bad, f"{docname}: put a blank line before and after each $$...$$ block: {bad}"


@pytest.mark.parametrize("docname", ALL_PAGES)
def test_citations_are_in_the_bibliography(docname):
    unknown = sorted(cite_keys(markdown_text(docname)) - bib_keys())
    assert not unknown, f"{docname}: {{cite}} keys missing from book/references.bib: {unknown}"


def test_every_bibliography_entry_is_cited_somewhere():
    cited = set().union(*(cite_keys(markdown_text(doc)) for doc in ALL_PAGES))
    uncited = sorted(bib_keys() - cited)
    assert not uncited, f"references.bib entries no page cites (cite them or remove them): {uncited}"


def test_api_reference_covers_every_prhlib_module():
    api = (ROOT / "book" / "api.md").read_text()
    documented = set(re.findall(r"\.\. automodule:: prhlib\.([\w.]+)", api))
    modules = {p.stem for p in (ROOT / "prhlib").glob("*.py") if not p.stem.startswith("_")}
    for pkg in (p for p in (ROOT / "prhlib").iterdir() if (p / "__init__.py").exists()):   # subpackages
        modules.add(pkg.name)   # documented as one page: the package re-exports its modules' names
    assert not (modules - documented), f"book/api.md lacks automodule entries for {sorted(modules - documented)}"
    assert not (documented - modules), f"book/api.md documents modules that do not exist: {sorted(documented - modules)}"


def test_instructor_guide_covers_every_chapter():
    guide = (ROOT / "book" / "instructor_guide.md").read_text()
    missing = [doc for doc in CHAPTERS if Path(doc).name not in guide]
    assert not missing, f"book/instructor_guide.md does not mention {missing}"
    for needed in ("two-week", "single-session", "prerequisites", "profile", "hide_solutions"):
        assert needed in guide.lower(), f"book/instructor_guide.md lacks a section on {needed!r}"


# --------------------------------------------------------------------------------------------------
# per-chapter notebook conventions
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("docname", CHAPTERS)
def test_notebook_is_stored_without_outputs(docname):
    nb = read_nb(docname)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{docname}.ipynb: code cells {dirty} have stored outputs or execution counts; clear them "
                       "(jupyter nbconvert --clear-output --inplace) before committing")
    assert "widgets" not in nb.metadata, f"{docname}.ipynb stores widget state in its metadata"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_notebook_uses_the_python3_kernel(docname):
    spec = read_nb(docname).metadata.get("kernelspec", {})
    assert spec.get("name") == "python3", f"{docname}.ipynb: kernelspec name must be 'python3', got {spec}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_first_markdown_cell_has_title_objectives_and_time(docname):
    nb = read_nb(docname)
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    assert first is not None and nb.cells[0] is first, f"{docname}.ipynb must start with a markdown cell"
    text = first.source
    assert re.match(r"^# \S", text), f"{docname}.ipynb: the first cell must start with '# Title'"
    assert "learning objectives" in text.lower(), f"{docname}.ipynb: add a 'Learning objectives' list to the first cell"
    assert re.search(r"^\s*[-*] ", text, re.MULTILINE), f"{docname}.ipynb: learning objectives should be a list"
    assert "estimated time" in text.lower(), f"{docname}.ipynb: add 'Estimated time: ...' to the first cell"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_first_code_cell_is_the_colab_install_cell(docname):
    cells = code_cells(read_nb(docname))
    assert cells, f"{docname}.ipynb has no code cells"
    first = cells[0]
    org_repo = CONFIG["repository"]["url"].split("github.com/")[-1].strip("/")
    assert '"google.colab" in sys.modules' in first.source, (
        f"{docname}.ipynb: the first code cell must be the Colab install cell (if \"google.colab\" in sys.modules)")
    assert f'REPO = "https://github.com/{org_repo}"' in first.source and "prhlib[colab] @ git+{REPO}" in first.source, (
        f"{docname}.ipynb: the Colab cell must set REPO = \"https://github.com/{org_repo}\" (the address of "
        "_config.yml) and %pip install \"prhlib[colab] @ git+{REPO}\"")
    assert "apt-get -qq update" in first.source, f"{docname}.ipynb: the Colab cell must run apt-get update first"
    assert "hide-output" in first.metadata.get("tags", []), f"{docname}.ipynb: tag the Colab cell 'hide-output'"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_second_code_cell_calls_config_setup(docname):
    cells = code_cells(read_nb(docname))
    assert len(cells) >= 2 and "config.setup(" in cells[1].source, (
        f"{docname}.ipynb: the second code cell must call config.setup() (profile and seed)")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_exercises_have_dropdown_solutions(docname):
    found = directives(markdown_text(docname))
    exercises = [d for d in found if d["name"] in ("exercise", "exercise-start")]
    solutions = {d["arg"]: d for d in found if d["name"] in ("solution", "solution-start")}
    assert 2 <= len(exercises) <= 4, f"{docname}.ipynb: needs 2-4 {{exercise}} blocks, has {len(exercises)}"
    for ex in exercises:
        label = ex["options"].get("label")
        assert label, f"{docname}.ipynb: exercise {ex['arg']!r} needs a ':label:'"
        assert label in solutions, f"{docname}.ipynb: exercise {label!r} has no {{solution}} {label}"
        assert "dropdown" in solutions[label]["options"].get("class", ""), (
            f"{docname}.ipynb: solution {label!r} needs ':class: dropdown'")
    assert any("predict" in ex["body"].lower() for ex in exercises), (
        f"{docname}.ipynb: at least one exercise must ask the reader to change code and predict the result "
        "before running it (use the word 'predict')")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_glued_names_are_defined(docname):
    nb = read_nb(docname)
    used = glue_keys_used(markdown_text(docname))
    literal, patterns, dynamic = glue_keys_defined(code_text(nb))
    missing = sorted(k for k in used if k not in literal and not any(p.match(k) for p in patterns))
    if dynamic and missing:
        pytest.skip(f"{docname}: glue() with computed names; cannot check {missing} statically (the build does)")
    assert not missing, f"{docname}.ipynb: prose pastes glue keys no code cell glues: {missing}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_glue_keys_are_unique(docname):
    calls = [m["name"] for m in GLUE_CALL.finditer(code_text(read_nb(docname))) if not m["f"]]
    dupes = sorted({k for k in calls if calls.count(k) > 1})
    assert not dupes, f"{docname}.ipynb glues these keys more than once (a build warning): {dupes}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_no_hand_typed_alignment_numbers(docname):
    offenders = hand_typed_numbers(markdown_text(docname))
    assert not offenders, (f"{docname}.ipynb: prose types numbers next to alignment words; glue them from code "
                           f"({{glue:text}}`name:.3f`) or cite their source: {offenders}")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_figures_fit_the_page(docname):
    code = code_text(read_nb(docname))
    widths = [float(w) for w in re.findall(r"figsize\s*=\s*\(\s*(\d+(?:\.\d+)?)\s*,", code)]
    too_wide = [w for w in widths if w > FULL_WIDTH]
    assert not too_wide, f"{docname}.ipynb: figures wider than {FULL_WIDTH} in: {too_wide}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_no_network_or_hub_loads_in_the_small_profile(docname):
    """Hub downloads must sit behind config.is_full(); a chapter must never call them unconditionally."""
    code = code_text(read_nb(docname))
    risky = re.findall(r"pretrained\s*=\s*True|load_dataset\(|from_pretrained\(|hf_hub_download\(", code)
    if risky:
        assert "is_full()" in code, f"{docname}.ipynb loads from a hub ({risky}) without a config.is_full() branch"


def test_binder_environment_matches_the_makefile():
    """The Binder button builds binder/: same Debian data packages as the Makefile, same Python requirements."""
    make_pkgs = set(re.search(r"^APT_PKGS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)[1].split())
    binder_pkgs = set((ROOT / "binder" / "apt.txt").read_text().split())
    assert binder_pkgs == make_pkgs, f"binder/apt.txt {sorted(binder_pkgs)} != Makefile APT_PKGS {sorted(make_pkgs)}"
    assert "-r ../requirements.txt" in (ROOT / "binder" / "requirements.txt").read_text()
    assert "pip install" in (ROOT / "binder" / "postBuild").read_text()


@pytest.mark.parametrize("docname", CHAPTERS)
def test_colab_cell_installs_the_makefile_data_packages(docname):
    first = code_cells(read_nb(docname))[0].source if code_cells(read_nb(docname)) else ""
    line = re.search(r'^\s*PKGS = "([^"]*)"', first, re.MULTILINE)
    if line is None:
        pytest.skip(f"{docname}: the Colab cell installs no Debian packages")
    make_pkgs = set(re.search(r"^APT_PKGS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)[1].split())
    named = set(line[1].split())
    assert named <= make_pkgs, f"{docname}.ipynb: the Colab cell installs {sorted(named - make_pkgs)}, unknown to the Makefile"


# --------------------------------------------------------------------------------------------------
# what readers see: teaching code, not bookkeeping
# --------------------------------------------------------------------------------------------------
HIDDEN_TAGS = {"remove-cell", "remove-input"}
MAX_LINE = 80        # characters of a visible code line the website shows without clipping
MAX_CELL_LINES = 30  # a visible code cell is one idea (the style guide aims at about 25 lines)


def visible_code_cells(nb) -> list:
    """Code cells whose source readers see on the website (not tagged remove-cell / remove-input)."""
    return [c for c in code_cells(nb) if not HIDDEN_TAGS & set(c.metadata.get("tags", []))]


@pytest.mark.parametrize("docname", CHAPTERS)
def test_visible_code_lines_fit_the_page(docname):
    long = [(i, line) for i, c in enumerate(visible_code_cells(read_nb(docname)))
            for line in c.source.splitlines() if len(line) > MAX_LINE]
    assert not long, (f"{docname}.ipynb: {len(long)} visible code lines are wider than {MAX_LINE} characters "
                      f"(the website clips them); first: {long[:3]}")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_glue_lives_in_hidden_cells(docname):
    walls = [i for i, c in enumerate(visible_code_cells(read_nb(docname))) if "glue(" in c.source]
    assert not walls, (f"{docname}.ipynb: visible code cells {walls} call glue(); move the bookkeeping to a "
                       "cell tagged remove-cell so readers see teaching code")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_visible_cells_are_short(docname):
    long = [(i, len(c.source.splitlines())) for i, c in enumerate(visible_code_cells(read_nb(docname)))
            if len(c.source.splitlines()) > MAX_CELL_LINES]
    assert not long, f"{docname}.ipynb: visible code cells longer than {MAX_CELL_LINES} lines (split them): {long}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapters_do_not_manage_threads(docname):
    code = code_text(read_nb(docname))
    assert not re.search(r"thread", code, re.IGNORECASE), (
        f"{docname}.ipynb: thread policy belongs inside prhlib, not in a chapter")


# --------------------------------------------------------------------------------------------------
# the referee standard in prose: claims are computed, not typed
# --------------------------------------------------------------------------------------------------
#: Phrases that state a result. A sentence holding one must paste a glued value or word ({glue...}) or be
#: guarded by a hidden cell (tagged remove-cell) whose code contains ``guard: <phrase>`` next to an assert
#: that fails when the data stop supporting the sentence. Questions and exercise prompts ("predict ...") are
#: not claims.
CLAIM_PHRASES = (
    "at chance", "above chance", "below chance", "near chance", "more often than", "less often than",
    "higher than", "lower than", "better than", "worse than", "survives", "vanishes", "the bright block",
    "interesting failure", "outperforms", "no better than", "the same score",
)
SENTENCE = re.compile(r"[^.!?]*(?:[.!?](?=\s|$)|$)", re.DOTALL)


def hidden_guards(nb) -> str:
    return "\n".join(c.source for c in code_cells(nb) if HIDDEN_TAGS & set(c.metadata.get("tags", [])))


def unguarded_claims(markdown: str, guards: str) -> list[str]:
    """Sentences of ``markdown`` that state a result (CLAIM_PHRASES) with no glue and no hidden guard."""
    found = []
    for sentence in SENTENCE.findall(markdown):
        low = " ".join(sentence.lower().split())
        if low.endswith("?") or "predict" in low:   # questions and exercise prompts claim nothing
            continue
        for phrase in CLAIM_PHRASES:
            if phrase in low and "{glue" not in sentence and f"guard: {phrase}" not in guards.lower():
                found.append(f"{phrase!r} in: {low[:110]}")
    return found


def test_claim_detector():
    md = "It retrieves at chance. Lite2 is higher than Lite0 ({glue:text}`x`). Plain text."
    assert unguarded_claims(md, "") == ["'at chance' in: it retrieves at chance."]
    assert unguarded_claims(md, "assert p > 0.05  # guard: at chance") == []


@pytest.mark.parametrize("docname", CHAPTERS)
def test_no_anecdotal_numbers(docname):
    text = markdown_text(docname).lower()
    assert "when we ran" not in text, (f"{docname}.ipynb: 'when we ran' in prose; compute the number in a hidden "
                                       "cell and glue it")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_claims_are_glued_or_guarded(docname):
    nb = read_nb(docname)
    claims = unguarded_claims(markdown_text(docname), hidden_guards(nb))
    assert not claims, (f"{docname}.ipynb: {len(claims)} sentences state a result without a glued value or a "
                        f"hidden guard ('# guard: <phrase>' beside an assert in a remove-cell cell): {claims}")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_rank_correlations_come_with_intervals(docname):
    """Correlations over models go through metrics.rank_correlation, which carries a bootstrap interval."""
    code = code_text(read_nb(docname))
    bare = re.findall(r"\b(?:spearmanr|kendalltau|pearsonr)\(|\.corr\(", code)
    assert not bare, (f"{docname}.ipynb calls {sorted(set(bare))}: use metrics.rank_correlation (estimate with "
                      "its interval and permutation p) or metrics.rsa")
