"""prhlib.metrics against values computed by the official platonic-rep ``metrics.py``.

Cases are read from ``$PRH_REFERENCE_DIR`` if set, else ``<repo>/../shared/reference`` if it exists
(held-out cases may be swapped in there), else the copy in ``tests/data/reference``. Every case the
JSON lists is checked, so new cases need no code change.

Tolerances (from the reference README): neighbour metrics 1e-5, CKA variants 1e-4, CKNNA 3e-4 (the
reference adds 1e-6 to CKA denominators; prhlib adds nothing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from prhlib import metrics

ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    env = os.environ.get("PRH_REFERENCE_DIR")
    if env:
        return Path(env)
    shared = ROOT.parent / "shared" / "reference"
    if (shared / "metrics_expected.json").exists():
        return shared
    return ROOT / "tests" / "data" / "reference"


REF = reference_dir()
EXPECTED = json.loads((REF / "metrics_expected.json").read_text())
CASES = np.load(REF / "metrics_cases.npz")

TOLERANCE = {"mutual_knn": 1e-5, "cycle_knn": 1e-5, "lcs_knn": 1e-5, "edit_distance_knn": 1e-5,
             "cka": 1e-4, "unbiased_cka": 1e-4, "cka_rbf_sigma1": 1e-4, "cknna": 3e-4}


def compute(name: str, a, b, k: int) -> float:
    """The prhlib value for one key of the reference JSON."""
    if name in metrics.NEIGHBOUR_METRICS:
        return metrics.measure(a, b, metric=name, k=k)
    if name == "cka":
        return metrics.cka(a, b)
    if name == "unbiased_cka":
        return metrics.unbiased_cka(a, b)
    if name.startswith("cka_rbf_sigma"):
        return metrics.cka(a, b, kernel="rbf", sigma=float(name[len("cka_rbf_sigma"):]))
    if name == "cknna":
        return metrics.cknna(a, b, k=max(k, 2))
    raise AssertionError(f"the reference JSON has a metric this test does not know: {name!r}")


def l2_rows(x: np.ndarray) -> torch.Tensor:
    """As the reference pipeline: F.normalize on a float32 tensor."""
    return torch.nn.functional.normalize(torch.from_numpy(np.asarray(x)), dim=-1)


CASE_PARAMS = [pytest.param(case, key, id=f"{case['name']}-{key}")
               for case in EXPECTED["cases"] for key in case["expected"]]


def test_reference_source_is_found():
    assert EXPECTED["cases"], f"no cases in {REF}"
    for case in EXPECTED["cases"]:
        assert f"{case['name']}__A" in CASES.files and f"{case['name']}__B" in CASES.files


@pytest.mark.parametrize("case,key", CASE_PARAMS)
def test_matches_reference(case, key):
    a = l2_rows(CASES[f"{case['name']}__A"])
    b = l2_rows(CASES[f"{case['name']}__B"])
    got = compute(key, a, b, case["k"])
    want = case["expected"][key]
    tol = TOLERANCE.get(key, 1e-4)
    assert abs(got - want) <= tol, f"{case['name']} {key}: prhlib {got!r}, reference {want!r} (tol {tol})"


LAYER = EXPECTED.get("layer_case")


@pytest.mark.skipif(LAYER is None, reason="no layer case in this reference set")
@pytest.mark.parametrize("metric", sorted((LAYER or {}).get("expected", {})))
def test_layer_case_matches_reference(metric):
    want = LAYER["expected"][metric]
    score, layers = metrics.best_layer_pair(CASES["layers__A"], CASES["layers__B"], metric=metric,
                                            k=LAYER["k"], q=LAYER["q"])
    tol = TOLERANCE.get(metric, 1e-4)
    assert abs(score - want["score"]) <= tol, (metric, score, want)
    assert list(layers) == list(want["layers"]), (metric, layers, want)


@pytest.mark.skipif(LAYER is None, reason="no layer case in this reference set")
def test_layer_case_calibration_reports_the_same_observed_pair():
    res = metrics.calibrate_layers(CASES["layers__A"], CASES["layers__B"], metric="mutual_knn", k=LAYER["k"],
                                   q=LAYER["q"], permutations=19, seed=0)
    want = LAYER["expected"]["mutual_knn"]
    assert abs(res.score - want["score"]) <= 1e-5 and list(res.layers) == list(want["layers"])


# The two clamp rules of the official ``remove_outliers`` (``--precise``: exact; without it, the README's
# command: per-sample torch.quantile, averaged), run once by tests/data/reference/make_clamp_reference.py
# on the tensors of clamp_cases.npz. Read from REF when it has them (a swapped-in set), else tests/data.
CLAMP_DIR = REF if (REF / "clamp_expected.json").exists() else ROOT / "tests" / "data" / "reference"
CLAMP = json.loads((CLAMP_DIR / "clamp_expected.json").read_text())
CLAMP_CASES = np.load(CLAMP_DIR / "clamp_cases.npz")


@pytest.mark.parametrize("key", sorted(CLAMP["thresholds"]))
def test_clamp_threshold_matches_the_official_remove_outliers(key):
    from prhlib.metrics.protocol import clamp_threshold

    name, q, rule = key.split("|")
    x = torch.from_numpy(CLAMP_CASES[name])
    got = float(clamp_threshold([x[:, i, :] for i in range(x.shape[1])], float(q), rule))
    want = CLAMP["thresholds"][key]
    assert got == pytest.approx(want, rel=1e-6, abs=0), (key, got, want)   # bit-identical on torch 2.14


@pytest.mark.parametrize("key", sorted(CLAMP["layer_pair"]))
def test_best_layer_pair_matches_the_official_loop_under_each_clamp(key):
    want = CLAMP["layer_pair"][key]
    rule = key.split("|")[1]
    score, layers = metrics.best_layer_pair(CLAMP_CASES["pair__A"], CLAMP_CASES["pair__B"], k=want["k"],
                                            q=want["q"], clamp=rule, include_concat=want["include_concat"])
    assert abs(score - want["score"]) <= TOLERANCE["mutual_knn"] and list(layers) == want["layers"], (key, score)


def test_the_clamp_reference_separates_the_two_rules():
    """The stored case is one where the rules disagree, so the test above can tell them apart."""
    pair = CLAMP["layer_pair"]
    assert abs(pair["dcd76ba|exact"]["score"] - pair["dcd76ba|per_sample"]["score"]) > 10 * TOLERANCE["mutual_knn"]
    t = CLAMP["thresholds"]
    assert t["heavy|0.95|per_sample"] < 0.9 * t["heavy|0.95|exact"]
