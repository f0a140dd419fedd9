"""The light core: ``pip install prhlib`` gives the metrics and the command line, nothing heavy.

* ``import prhlib.metrics`` (and ``prhlib.cli``) load no plotting or model library (checked in a fresh
  interpreter, from ``sys.modules``);
* a module whose extra is missing fails on import with the exact ``pip install "prhlib[extra]"``
  (:mod:`prhlib._optional`; a missing library is simulated with ``sys.modules[name] = None``);
* the extras in ``pyproject.toml`` agree with :data:`prhlib._optional.EXTRAS` and with what the modules import;
* (slow) the wheel, built from this tree, installs with its core dependencies only into a fresh virtual
  environment and computes the metrics there, with the same numbers as here.

Which PyTorch the fresh environment gets: ``PRH_TEST_TORCH`` (a pip requirement or a wheel path) if set;
else a local CPU wheel if this machine has one (``/opt/wheels/torch-*+cpu-*.whl``: 190 MB, offline, no
torchvision needed by the core); else ``torch`` from PyTorch's CPU index (what the release workflow does).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from prhlib import _optional

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HEAVY = ("matplotlib", "seaborn", "plotly", "timm", "open_clip", "transformers", "sentence_transformers",
         "onnxruntime", "colour", "skimage", "sklearn", "pandas", "PIL", "datasets", "torchvision")


def run_python(code: str, python: str = sys.executable, env: dict | None = None, cwd: Path = ROOT,
               timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, **(env or {})})


# --------------------------------------------------------------------------------------------------
# what importing the core loads
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["prhlib", "prhlib.metrics", "prhlib.cli"])
def test_core_modules_import_nothing_heavy(module):
    result = run_python(f"""
        import json, sys
        import {module}
        print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
        """)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), f"import {module} loads {sorted(loaded & set(HEAVY))}"


def test_the_heavy_check_can_fail():
    result = run_python("import json, sys, prhlib.plotting; print(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    assert "matplotlib" in json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_prhlib_is_lazy_but_submodules_are_reachable():
    result = run_python("""
        import sys, prhlib
        assert "prhlib.metrics" not in sys.modules
        assert prhlib.metrics.mutual_knn is not None and "prhlib.metrics" in sys.modules
        try:
            prhlib.nonexistent
        except AttributeError as e:
            print("AttributeError", e)
        """)
    assert result.returncode == 0, result.stderr
    assert "AttributeError" in result.stdout


# --------------------------------------------------------------------------------------------------
# _optional
# --------------------------------------------------------------------------------------------------
def test_require_imports_an_installed_module():
    assert _optional.require("json", "models") is json


def test_require_names_the_extra_of_a_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "colour", None)  # import colour now raises ModuleNotFoundError
    with pytest.raises(_optional.MissingExtraError, match=re.escape('pip install "prhlib[colour]"')) as err:
        _optional.require("colour", "colour")
    assert "colour-science" in str(err.value) and isinstance(err.value, ImportError)


def test_ensure_checks_without_importing(monkeypatch):
    monkeypatch.delitem(sys.modules, "wave", raising=False)
    _optional.ensure(("json", "wave"), "plots")
    assert "wave" not in sys.modules, "ensure() must not import"
    with pytest.raises(_optional.MissingExtraError, match=re.escape('pip install "prhlib[plots]"')):
        _optional.ensure(("json", "no_such_module_prh"), "plots")


def test_unknown_extra_raises():
    with pytest.raises(ValueError, match="unknown prhlib extra"):
        _optional.require("json", "everything")
    with pytest.raises(ValueError, match="unknown prhlib extra"):
        _optional.install_command("gpu")


#: Modules owned by other files and the extra each must name when its libraries are missing.
WRAPPED = {"prhlib.models": ("timm", "models"), "prhlib.features": ("safetensors", "models"),
           "prhlib.colors": ("colour", "colour"), "prhlib.plotting": ("matplotlib", "plots")}


@pytest.mark.parametrize("module", sorted(WRAPPED))
def test_a_module_without_its_extra_says_what_to_install(module):
    missing, extra = WRAPPED[module]
    result = run_python(f"""
        import sys
        sys.modules[{missing!r}] = None        # as if {missing} were not installed
        try:
            import {module}
        except ImportError as e:
            print(type(e).__name__, e)
        else:
            print("imported")
        """)
    assert result.returncode == 0, result.stderr
    assert f'pip install "prhlib[{extra}]"' in result.stdout, (
        f"import {module} without {missing} must fail with the install command; got: {result.stdout.strip()}")


# --------------------------------------------------------------------------------------------------
# pyproject.toml
# --------------------------------------------------------------------------------------------------
def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_core_dependencies_are_light():
    core = _names(PYPROJECT["project"]["dependencies"])
    assert {"numpy", "scipy", "torch"} <= core
    assert core <= {"numpy", "scipy", "torch", "threadpoolctl", "tqdm"}, f"heavy core dependencies: {core}"


def test_no_machine_workaround_in_the_package_metadata():
    deps = PYPROJECT["project"]["dependencies"] + sum(PYPROJECT["project"]["optional-dependencies"].values(), [])
    assert not [d for d in deps if "!=" in d], "exclusions of this machine's wheels belong in requirements.txt"
    assert "torch>=2.2,!=2.13.0" in (ROOT / "requirements.txt").read_text()
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_extras_are_the_documented_ones():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras) == set(_optional.EXTRAS)
    models = _names(extras["models"])
    assert {"timm", "open-clip-torch", "transformers", "sentence-transformers", "onnxruntime", "safetensors"} <= models
    assert {"sentencepiece", "protobuf", "datasets", "accelerate"} <= _names(extras["full"])
    assert {"colour-science", "scikit-image"} <= _names(extras["colour"])
    assert {"matplotlib", "seaborn", "plotly"} <= _names(extras["plots"])
    assert "jupyterlab" in _names(extras["book"]) and "myst-nb" in _names(extras["colab"])
    assert PYPROJECT["project"]["scripts"]["prhlib"] == "prhlib.cli:main"


def test_requirements_is_the_complete_book_environment():
    """Every package of every extra (except the full profile's hub-only loaders) is in requirements.txt."""
    req = _names([line for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if line.strip() and not line.startswith("#")])
    extras = PYPROJECT["project"]["optional-dependencies"]
    wanted = set().union(*(_names(v) for k, v in extras.items() if k != "full")) | _names(
        PYPROJECT["project"]["dependencies"])
    wanted -= {"prhlib", "fonttools"}  # fonttools comes with matplotlib
    assert wanted <= req, f"requirements.txt lacks {sorted(wanted - req)}"
    assert "jupyterlab" in req


# --------------------------------------------------------------------------------------------------
# the wheel in a fresh virtual environment (slow)
# --------------------------------------------------------------------------------------------------
def _torch_requirement() -> list[str]:
    if os.environ.get("PRH_TEST_TORCH"):
        return [os.environ["PRH_TEST_TORCH"]]
    local = sorted(glob.glob(f"/opt/wheels/torch-*+cpu-cp{sys.version_info[0]}{sys.version_info[1]}-*.whl"))
    if local:
        return [local[-1]]
    pytest.skip("no local CPU wheel of PyTorch (/opt/wheels) and PRH_TEST_TORCH unset: a registry torch is a "
                "multi-GB CUDA build; set PRH_TEST_TORCH to a wheel or requirement to run this test")


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


SMALL_ARRAYS = """
    import json, numpy as np
    from prhlib import metrics
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 4))
    a, b = z @ rng.normal(size=(4, 12)), z @ rng.normal(size=(4, 9)) + 0.3 * rng.normal(size=(60, 9))
    cal = metrics.calibrate(a, b, permutations=50)
    layers = [a, a + rng.normal(size=a.shape)], [b, rng.normal(size=(60, 5))]
    best = metrics.best_layer_pair(*layers)
    print(json.dumps({"mknn": metrics.mutual_knn(a, b, k=5), "cka": metrics.cka(a, b),
                      "p": cal.p_value, "cal": cal.calibrated, "best": [best[0], list(best[1])]}))
"""


@pytest.mark.slow
def test_wheel_installs_with_core_dependencies_only_and_computes_the_metrics(tmp_path):
    src, dist = tmp_path / "src", tmp_path / "dist"  # build from a copy: setuptools writes build/ in-tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "prhlib", src / "prhlib", ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("prhlib-*.whl")
    venv = tmp_path / "venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    install = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel),
                              *_torch_requirement()], capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    assert install.returncode == 0, install.stdout + install.stderr
    size_mb = _du(venv) / 1e6
    print(f"\ncore install: {seconds:.0f} s, {size_mb:.0f} MB ({wheel.name})")

    freeze = subprocess.run([py, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(freeze.stdout)}
    assert not installed & {h.lower().replace("_", "-") for h in
                            ("matplotlib", "timm", "transformers", "open-clip-torch", "pandas", "scikit-learn",
                             "pillow", "colour-science", "plotly", "torchvision")}, sorted(installed)

    elsewhere = tmp_path / "run"  # not the source tree: the installed package must be the one imported
    elsewhere.mkdir()
    there = run_python(SMALL_ARRAYS, python=py, cwd=elsewhere)
    assert there.returncode == 0, there.stderr
    here = run_python(SMALL_ARRAYS)
    got, want = json.loads(there.stdout.splitlines()[-1]), json.loads(here.stdout.splitlines()[-1])
    assert got["best"][1] == want["best"][1]
    assert np.allclose([got[k] for k in ("mknn", "cka", "p", "cal")], [want[k] for k in ("mknn", "cka", "p", "cal")],
                       atol=1e-6), (got, want)

    np.save(elsewhere / "a.npy", np.random.default_rng(1).normal(size=(40, 6)).astype(np.float32))
    cli = subprocess.run([str(venv / "bin" / "prhlib"), "align", "a.npy", "a.npy", "-k", "5", "--permutations",
                          "20", "--json"], capture_output=True, text=True, cwd=elsewhere, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["score"] == 1.0
    missing = run_python("import prhlib._optional as o; o.require('timm', 'models')", python=py, cwd=elsewhere)
    assert missing.returncode != 0 and 'pip install "prhlib[models]"' in missing.stderr
