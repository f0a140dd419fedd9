"""Reference values for the two clamp rules: run the official platonic-rep code on generated tensors.

    python tests/data/reference/make_clamp_reference.py PATH/TO/platonic-rep tests/data/reference

Executes ``metrics.remove_outliers`` and ``measure_alignment.compute_score`` as they are at commits
4dd084e and dcd76ba (read with ``git show``; nothing of them is copied into prhlib; torchaudio, which
metrics.py imports but these functions do not use, is stubbed) and writes clamp_cases.npz (the inputs)
and clamp_expected.json (the official outputs). Needs torch, numpy and scikit-learn; runs on the CPU.
"""
import ast, json, subprocess, sys, types
import numpy as np, torch
import torch.nn.functional as F

REPO = sys.argv[1]   # a git clone of github.com/minyoungg/platonic-rep
OUT = sys.argv[2]

def official(commit):
    src = subprocess.run(["git", "-C", REPO, "show", f"{commit}:metrics.py"], capture_output=True, text=True, check=True).stdout
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    sys.modules.setdefault("torchaudio.functional", types.ModuleType("torchaudio.functional"))
    mod = types.ModuleType(f"official_metrics_{commit}")
    exec(compile(src, f"{commit}:metrics.py", "exec"), mod.__dict__)
    ma = subprocess.run(["git", "-C", REPO, "show", f"{commit}:measure_alignment.py"], capture_output=True, text=True, check=True).stdout
    tree = ast.parse(ma)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "compute_score")
    ns = {"torch": torch, "F": F, "metrics": mod}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), f"{commit}:measure_alignment.py", "exec"), ns)
    return mod, ns["compute_score"]

rng = np.random.default_rng(2024)
cases = {}
# heavy: Student-t(2) values, each sample with its own log-normal scale (rows differ in size)
cases["heavy"] = (rng.standard_t(2, size=(50, 3, 32)) * np.exp(rng.normal(0, 1.0, size=(50, 1, 1)))).astype(np.float32)
# gauss: plain Gaussian, every row alike: the two rules nearly agree
cases["gauss"] = rng.normal(size=(40, 2, 24)).astype(np.float32)
# one layer n x d, a few huge samples
one = rng.normal(size=(30, 50)); one[:3] *= 40
cases["one_layer"] = one.astype(np.float32)[:, None, :]
# a layered pair with a shared latent and heterogeneous row scales
z = rng.normal(size=(60, 6))
scale = np.exp(rng.normal(0, 1.0, size=(60, 1)))
A = np.stack([scale * (z @ rng.normal(size=(6, 20)) + s * rng.standard_t(3, size=(60, 20))) for s in (3.0, 1.0, 0.5, 2.0)], axis=1)
B = np.stack([np.exp(rng.normal(0, 1.0, size=(60, 1))) * (z @ rng.normal(size=(6, 16)) + s * rng.standard_t(3, size=(60, 16))) for s in (2.0, 0.7, 1.5)], axis=1)
cases["pair__A"] = A.astype(np.float32); cases["pair__B"] = B.astype(np.float32)
np.savez_compressed(f"{OUT}/clamp_cases.npz", **cases)

QS = [0.5, 0.9, 0.95, 0.99]
expected = {"provenance": ("official platonic-rep metrics.remove_outliers (commits 4dd084e and dcd76ba, identical) "
                           "run on CPU, torch " + torch.__version__ + "; threshold = max |remove_outliers(x)| "
                           "(the clamp value); exact=True is the --precise rule, exact=False the default. "
                           "layer_pair: remove_outliers(q=0.95) of each n x L x d tensor then "
                           "measure_alignment.compute_score(B, A, 'mutual_knn', topk=10) as compute_alignment "
                           "calls it; 4dd084e also tries the concatenation of all layers (index -1)."),
            "thresholds": {}, "layer_pair": {}}
for commit in ("4dd084e", "dcd76ba"):
    mod, compute_score = official(commit)
    for name in ("heavy", "gauss", "one_layer"):
        x = torch.from_numpy(cases[name])
        for q in QS:
            for exact in (True, False):
                t = float(mod.remove_outliers(x.float(), q=q, exact=exact).abs().max())
                key = f"{name}|{q}|{'exact' if exact else 'per_sample'}"
                prev = expected["thresholds"].setdefault(key, t)
                assert prev == t, (commit, key, prev, t)
    for exact in (True, False):
        a = mod.remove_outliers(torch.from_numpy(cases["pair__A"]).float(), q=0.95, exact=exact)
        b = mod.remove_outliers(torch.from_numpy(cases["pair__B"]).float(), q=0.95, exact=exact)
        # compute_alignment calls compute_score(y_feats, x_feats): swap back to (A, B) order
        score, (i, j) = compute_score(b, a, metric="mutual_knn", topk=10)
        expected["layer_pair"][f"{commit}|{'exact' if exact else 'per_sample'}"] = {
            "score": float(score), "layers": [int(j), int(i)], "include_concat": commit == "4dd084e", "k": 10, "q": 0.95}
json.dump(expected, open(f"{OUT}/clamp_expected.json", "w"), indent=1)
print(json.dumps(expected, indent=1))
