"""The ``prhlib`` command line: numbers equal the library's, files are read without unpickling, and every
bad input gets one line on stderr with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from prhlib import cli, metrics

ROOT = Path(__file__).resolve().parents[1]


def related(n=80, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5))
    a = z @ rng.normal(size=(5, 16)) + 0.3 * rng.normal(size=(n, 16))
    b = z @ rng.normal(size=(5, 12)) + 0.3 * rng.normal(size=(n, 12))
    return a.astype(np.float32), b.astype(np.float32)


def run(argv, capsys):
    """Exit status, stdout, stderr of ``prhlib argv`` (argparse's own errors exit through SystemExit)."""
    try:
        status = cli.main([str(x) for x in argv])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def files(tmp_path):
    a, b = related()
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    return tmp_path, a, b


# --------------------------------------------------------------------------------------------------
# align: the library's numbers
# --------------------------------------------------------------------------------------------------
def test_align_one_layer_json_matches_the_library(files, capsys):
    tmp, a, b = files
    status, out, err = run(["align", tmp / "a.npy", tmp / "b.npy", "-k", 5, "--permutations", 99,
                            "--seed", 3, "--json", "--quiet"], capsys)
    assert status == 0, err
    res = json.loads(out)  # stdout is exactly one JSON object
    assert {"score", "chance", "threshold", "p_value", "calibrated"} <= set(res) and "layers" not in res
    want = metrics.calibrate(metrics.prepare(a), metrics.prepare(b), k=5, permutations=99, seed=3)
    assert res["score"] == pytest.approx(want.score) and res["threshold"] == pytest.approx(want.threshold)
    assert res["p_value"] == pytest.approx(want.p_value) and res["calibrated"] == pytest.approx(want.calibrated)
    assert res["chance"] == pytest.approx(5 / 79)
    assert res["score"] > res["threshold"] > res["chance"] * 0.5 and res["p_value"] == pytest.approx(0.01)


def test_align_raw_uses_the_features_as_given(files, capsys):
    tmp, a, b = files
    status, out, _ = run(["align", tmp / "a.npy", tmp / "b.npy", "--metric", "cka", "--raw",
                          "--permutations", 20, "--json"], capsys)
    assert status == 0
    res = json.loads(out)
    assert res["score"] == pytest.approx(metrics.cka(a, b)) and res["k"] is None and res["q"] is None
    assert res["chance"] is None, "biased CKA's analytic level assumes isotropic Gaussian features"


@pytest.mark.parametrize("metric, chance", [("svcca", None), ("unbiased_cka", 0.0), ("cycle_knn", None)])
def test_align_reports_only_distribution_free_chance_levels(files, capsys, metric, chance):
    tmp, _, _ = files
    status, out, _ = run(["align", tmp / "a.npy", tmp / "b.npy", "--metric", metric, "--permutations", 10,
                          "--json"], capsys)
    assert status == 0 and json.loads(out)["chance"] == chance


def test_align_layers_is_the_maxT_calibrated_best_layer_pair(tmp_path, capsys):
    a, b = related()
    rng = np.random.default_rng(1)
    layers_a = [rng.normal(size=(80, 7)), a + 0.1 * rng.normal(size=a.shape), a]
    layers_b = [b, rng.normal(size=(80, 4))]
    np.savez(tmp_path / "a.npz", *layers_a)
    torch.save({"first": torch.tensor(layers_b[0]), "second": torch.tensor(layers_b[1])}, tmp_path / "b.pt")
    status, out, err = run(["align", tmp_path / "a.npz", tmp_path / "b.pt", "--permutations", 50, "--json"],
                           capsys)
    assert status == 0, err
    res = json.loads(out)
    want = metrics.calibrate_layers(layers_a, layers_b, permutations=50, seed=0)
    best, pair = metrics.best_layer_pair(layers_a, layers_b)
    assert tuple(res["layers"]) == want.layers == pair and res["layers"][1] == 0
    assert res["score"] == pytest.approx(best) == pytest.approx(want.score)
    assert res["threshold"] == pytest.approx(want.threshold) and res["p_value"] == pytest.approx(want.p_value)
    status, text, _ = run(["align", tmp_path / "a.npz", tmp_path / "b.pt", "--permutations", 50], capsys)
    assert status == 0 and f"A[{pair[0]}] x B[{pair[1]}]" in text and "maxT" in text


def test_an_n_by_L_by_d_array_is_layered(tmp_path, capsys):
    a, b = related()
    np.save(tmp_path / "a3.npy", np.stack([a, a[:, ::-1]], axis=1))
    np.save(tmp_path / "b.npy", b)
    status, out, _ = run(["align", tmp_path / "a3.npy", tmp_path / "b.npy", "--permutations", 10, "--json"], capsys)
    assert status == 0 and len(json.loads(out)["layers"]) == 2


# --------------------------------------------------------------------------------------------------
# file formats, never unpickling
# --------------------------------------------------------------------------------------------------
def test_every_format_gives_the_same_layers(tmp_path):
    from safetensors.numpy import save_file

    a, b = related()
    np.save(tmp_path / "x.npy", a)
    np.savez(tmp_path / "x.npz", layer=a)
    torch.save(torch.tensor(a), tmp_path / "x.pt")
    save_file({"features": a}, tmp_path / "x.safetensors")
    for suffix in ("npy", "npz", "pt", "safetensors"):
        (layer,), layered = cli.load_layers(tmp_path / f"x.{suffix}")
        assert not layered and np.array_equal(layer, a), suffix
        assert layer.flags.writeable


def test_safetensors_reader_agrees_with_the_library(tmp_path):
    from safetensors.torch import save_file

    t = {"layer10": torch.randn(6, 3, dtype=torch.float16), "layer2": torch.randn(6, 5, dtype=torch.bfloat16),
         "layer1": torch.randn(6, 4, dtype=torch.float64)}
    save_file(t, tmp_path / "t.safetensors", metadata={"note": "x"})
    layers, layered = cli.load_layers(tmp_path / "t.safetensors")
    assert layered and [x.shape[1] for x in layers] == [4, 5, 3]  # natural key order: 1, 2, 10
    for got, name in zip(layers, ("layer1", "layer2", "layer10")):
        assert np.array_equal(got, t[name].float().numpy() if name != "layer1" else t[name].numpy())


def test_a_prhlib_cache_file_is_read_at_true_layer_widths(tmp_path):
    from safetensors.numpy import save_file

    feats = np.zeros((5, 2, 4), np.float32)
    feats[:, 0, :2], feats[:, 1, :] = 1.0, 2.0
    save_file({"features": feats}, tmp_path / "c.safetensors", metadata={"layer_dims": "[2, 4]"})
    layers, layered = cli.load_layers(tmp_path / "c.safetensors")
    assert layered and [x.shape for x in layers] == [(5, 2), (5, 4)]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("make", ["npy_object", "pt_object", "npy_text"])
def test_pickled_content_is_refused(tmp_path, capsys, make):
    path = tmp_path / ("x.pt" if make.startswith("pt") else "x.npy")
    if make == "npy_object":
        np.save(path, np.array([Evil()], dtype=object), allow_pickle=True)
    elif make == "pt_object":
        torch.save({"a": torch.zeros(3, 2), "b": Evil()}, path)
    else:
        path.write_text("not an array\n")
    np.save(tmp_path / "b.npy", np.zeros((3, 2)))
    status, out, err = run(["align", path, tmp_path / "b.npy"], capsys)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "cannot read" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# bad input: one line on stderr, status 2
# --------------------------------------------------------------------------------------------------
BAD = {
    "missing file": (lambda t: ["align", t / "nope.npy", t / "b.npy"], "no such file"),
    "unknown format": (lambda t: ["align", t / "a.csv", t / "b.npy"], "unsupported file type"),
    "corrupt npz": (lambda t: ["align", t / "broken.npz", t / "b.npy"], "cannot read"),
    "rows differ": (lambda t: ["align", t / "short.npy", t / "b.npy"], "50 rows but B has 80"),
    "NaN": (lambda t: ["align", t / "nan.npy", t / "b.npy"], "NaN"),
    "k too large": (lambda t: ["align", t / "a.npy", t / "b.npy", "-k", "80"], "k = 80"),
    "k for a kernel metric": (lambda t: ["align", t / "a.npy", t / "b.npy", "--metric", "cka", "-k", "5"],
                              "does not use k"),
    "unknown metric": (lambda t: ["align", t / "a.npy", t / "b.npy", "--metric", "mknn"], "invalid choice"),
    "zero permutations": (lambda t: ["align", t / "a.npy", t / "b.npy", "--permutations", "0"], "positive"),
    "1-D array": (lambda t: ["align", t / "vec.npy", t / "b.npy"], "shape"),
    "constant features": (lambda t: ["align", t / "const.npy", t / "b.npy", "--metric", "cka", "--raw"], "CKA"),
    "unknown option": (lambda t: ["align", t / "a.npy", t / "b.npy", "--perms", "5"], "unrecognized"),
}


@pytest.mark.parametrize("label", sorted(BAD))
def test_bad_input_gets_one_line_and_status_2(files, capsys, label):
    tmp, a, b = files
    np.save(tmp / "short.npy", a[:50])
    bad = a.copy()
    bad[4, 2] = np.nan
    np.save(tmp / "nan.npy", bad)
    np.save(tmp / "vec.npy", a[:, 0])
    np.save(tmp / "const.npy", np.ones((80, 3), np.float32))
    (tmp / "a.csv").write_text("1,2\n")
    (tmp / "broken.npz").write_bytes(b"PK\x03\x04garbage")
    argv, needle = BAD[label]
    status, out, err = run(argv(tmp), capsys)
    lines = err.strip().splitlines()
    assert status == 2 and out == ""
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("prhlib"), err


def test_argparse_errors_exit_with_status_2(files, capsys):
    tmp, _, _ = files
    status, _, err = run(["align", tmp / "a.npy"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "required: B" in err


@pytest.mark.parametrize("command", ["align", "features", "models"])
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "example" in out and f"prhlib {command}" in out.split("example", 1)[1]


# --------------------------------------------------------------------------------------------------
# as a program: python -m prhlib, progress on stderr only
# --------------------------------------------------------------------------------------------------
def test_python_dash_m_with_progress_keeps_stdout_clean(files):
    tmp, a, b = files
    env = {**os.environ, "PRH_PROGRESS": "1"}
    result = subprocess.run([sys.executable, "-m", "prhlib", "align", "a.npy", "b.npy", "--permutations",
                             str(cli.PROGRESS_FROM), "--json"], capture_output=True, text=True, cwd=tmp,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) >= {"score", "chance", "threshold", "p_value", "calibrated"}
    assert "permutations" in result.stderr and "done" in result.stderr
    bad = subprocess.run([sys.executable, "-m", "prhlib", "align", "nope.npy", "b.npy"], capture_output=True,
                         text=True, cwd=tmp, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_version_flag(capsys):
    import prhlib

    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"prhlib {prhlib.__version__}"


# --------------------------------------------------------------------------------------------------
# models and features
# --------------------------------------------------------------------------------------------------
def test_models_lists_the_registry_per_profile(capsys):
    from prhlib import models

    status, out, _ = run(["models", "--json"], capsys)
    table = json.loads(out)
    assert status == 0 and set(table) == {"small", "full"}
    assert set(table["small"]) == set(models.available(profile="small"))
    assert set(table["small"]) | set(table["full"]) == set(models.available(profile="full"))
    assert table["small"]["minilm_l6"] == "text" and table["small"]["efficientnet_lite0"] == "image"
    status, out, _ = run(["models", "--profile", "small"], capsys)
    assert status == 0 and "small profile" in out and "full profile" not in out


def test_features_of_captions_feed_align(tmp_path, capsys):
    captions = [f"a photo of a {w}" for w in ("cat", "dog", "red car", "blue boat", "green tree", "small house",
                                               "tall tower", "yellow bird", "old bike", "new train", "cold lake",
                                               "hot desert")]
    (tmp_path / "caps.txt").write_text("\n".join(captions) + "\n")
    status, _, err = run(["features", "glove50", tmp_path / "caps.txt", "-o", tmp_path / "text.npz"], capsys)
    assert status == 0, err
    with np.load(tmp_path / "text.npz") as z:
        assert [z[k].shape for k in z.files] == [(12, 50)]
    status, out, err = run(["align", tmp_path / "text.npz", tmp_path / "text.npz", "-k", 3, "--permutations", 20,
                            "--json"], capsys)
    assert status == 0 and json.loads(out)["score"] == 1.0, err


def test_features_input_errors(tmp_path, capsys):
    (tmp_path / "caps.txt").write_text("a cat\n\na dog\n")
    for argv, needle in ((["features", "glove50", tmp_path / "caps.txt", "-o", tmp_path / "o.npz"], "line 2"),
                         (["features", "efficientnet_lite0", tmp_path / "caps.txt", "-o", tmp_path / "o.npz"],
                          "folder of images"),
                         (["features", "glove50", tmp_path / "none.txt", "-o", tmp_path / "o.npz"], "no such"),
                         (["features", "glove50", tmp_path / "caps.txt", "-o", tmp_path / "o.csv"], ".npz"),
                         (["features", "no_such_model", tmp_path / "caps.txt", "-o", tmp_path / "o.npz"],
                          "unknown model")):
        status, out, err = run(argv, capsys)
        assert status == 2 and needle in err and len(err.strip().splitlines()) == 1, (argv, err)


@pytest.mark.slow
def test_features_of_an_image_folder(tmp_path, capsys):
    from prhlib import data

    images, _ = data.load_pairs("tuxpaint", n=12)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(images):
        im.save(folder / f"{i:02d}.png")
    status, _, err = run(["features", "efficientnet_lite0", folder, "-o", tmp_path / "v.npz"], capsys)
    assert status == 0, err
    with np.load(tmp_path / "v.npz") as z:
        assert len(z.files) > 1 and all(z[k].shape[0] == 12 for k in z.files)


# --------------------------------------------------------------------------------------------------
# --clamp: the two official clamp rules
# --------------------------------------------------------------------------------------------------
def test_align_clamp_per_sample_matches_the_library(tmp_path, capsys):
    a, b = related()
    rng = np.random.default_rng(4)
    a = a * np.exp(rng.normal(size=(80, 1))).astype(np.float32)      # samples of different sizes
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    status, out, err = run(["align", tmp_path / "a.npy", tmp_path / "b.npy", "-k", 5, "--permutations", 19,
                            "--clamp", "per_sample", "--json"], capsys)
    assert status == 0, err
    res = json.loads(out)
    want = metrics.calibrate(metrics.prepare(a, clamp="per_sample"), metrics.prepare(b, clamp="per_sample"),
                             k=5, permutations=19, seed=0)
    assert res["clamp"] == "per_sample" and res["score"] == pytest.approx(want.score)
    assert res["threshold"] == pytest.approx(want.threshold)
    status, out, _ = run(["align", tmp_path / "a.npy", tmp_path / "b.npy", "-k", 5, "--permutations", 19,
                          "--json"], capsys)
    exact = json.loads(out)
    assert status == 0 and exact["clamp"] == "exact" and exact["score"] != res["score"]


def test_align_layers_pass_the_clamp_to_calibrate_layers(tmp_path, capsys):
    a, b = related()
    rng = np.random.default_rng(6)
    layers_a = [a * np.exp(rng.normal(size=(80, 1))), a + rng.standard_t(2, size=a.shape)]
    layers_b = [b, rng.normal(size=(80, 4))]
    np.savez(tmp_path / "a.npz", *layers_a)
    np.savez(tmp_path / "b.npz", *layers_b)
    status, out, err = run(["align", tmp_path / "a.npz", tmp_path / "b.npz", "--permutations", 20,
                            "--clamp", "per_sample", "--json"], capsys)
    assert status == 0, err
    res = json.loads(out)
    want = metrics.calibrate_layers(layers_a, layers_b, permutations=20, seed=0, clamp="per_sample")
    assert tuple(res["layers"]) == want.layers and res["score"] == pytest.approx(want.score)
    assert res["p_value"] == pytest.approx(want.p_value)


def test_align_raw_reports_no_clamp_and_a_bad_clamp_is_a_usage_error(files, capsys):
    tmp, _, _ = files
    status, out, _ = run(["align", tmp / "a.npy", tmp / "b.npy", "--raw", "--permutations", 5, "--json"],
                         capsys)
    assert status == 0 and json.loads(out)["clamp"] is None
    status, out, err = run(["align", tmp / "a.npy", tmp / "b.npy", "--clamp", "global"], capsys)
    assert status == 2 and out == "" and "--clamp" in err and "per_sample" in err
    with pytest.raises(cli.UsageError, match="--clamp must be one of"):
        cli.align([np.ones((20, 2))], [np.ones((20, 2))], layered=False, k=3, clamp="median")
