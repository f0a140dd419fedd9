"""Benchmark prhlib.metrics against a plain implementation of the reference algorithm.

The plain versions below follow the official platonic-rep algorithm step by step: the full n x n
similarity matrix, a full descending argsort of every row, dense n x n 0/1 masks, and, for the layer
sweep, one metric call per layer pair that re-normalises both layers and recomputes both neighbour
lists. Both sides run in the same process on the same data with the same thread count, and the
script prints the ratio plain / prhlib (higher = prhlib faster).

Peak memory of ``mutual_knn`` at n = 40,000 is measured in a fresh subprocess (its ``VmHWM``, the peak
resident set), so the number includes the Python interpreter and PyTorch.

Usage::

    python benchmarks/metrics.py            # everything, writes benchmarks/results/metrics.json
    python benchmarks/metrics.py --quick    # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from prhlib import metrics  # noqa: E402


# ---------------------------------------------------------------------------------------------
# plain reference algorithm (what the official code does)
# ---------------------------------------------------------------------------------------------
def plain_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    sims = x @ x.T
    sims.fill_diagonal_(-1e8)
    return sims.argsort(dim=1, descending=True)[:, :k]


def plain_mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    ka, kb = plain_knn(a, k), plain_knn(b, k)
    n = ka.shape[0]
    rows = torch.arange(n).unsqueeze(1)
    mask_a = torch.zeros(n, n)
    mask_b = torch.zeros(n, n)
    mask_a[rows, ka] = 1.0
    mask_b[rows, kb] = 1.0
    return float(((mask_a * mask_b).sum(dim=1) / k).mean())


def plain_clamp(feats: torch.Tensor, q: float = 0.95) -> torch.Tensor:
    threshold = feats.flatten().abs().sort().values[int(q * feats.numel())]
    return feats.clamp(-threshold, threshold)


def plain_best_layer_pair(layers_a: torch.Tensor, layers_b: torch.Tensor, k: int, q: float = 0.95):
    layers_a, layers_b = plain_clamp(layers_a, q), plain_clamp(layers_b, q)
    best, where = 0.0, None
    for i in range(layers_a.shape[1]):
        for j in range(layers_b.shape[1]):
            x = torch.nn.functional.normalize(layers_a[:, i], dim=-1)
            y = torch.nn.functional.normalize(layers_b[:, j], dim=-1)
            s = plain_mutual_knn(x, y, k)
            if s > best:
                best, where = s, (i, j)
    return best, where


# ---------------------------------------------------------------------------------------------
def timed_pair(plain, fast, repeat: int = 1):
    """Run ``plain`` and ``fast`` alternately ``repeat`` times (so both see the same machine load).

    Returns the median wall seconds, median CPU seconds (all threads of this process) and the last
    result of each.
    """
    wall = {"plain": [], "fast": []}
    cpu = {"plain": [], "fast": []}
    out = {}
    for _ in range(repeat):
        for name, fn in (("plain", plain), ("fast", fast)):
            c0, t0 = time.process_time(), time.perf_counter()
            out[name] = fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = lambda v: float(np.median(v))  # noqa: E731
    return ({k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}, out)


def shared_latent(n, d_a, d_b, m=16, seed=0, layers=None):
    """Two representations of the same hidden latent: linear maps of z plus noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, m, generator=g)
    if layers is None:
        a = z @ torch.randn(m, d_a, generator=g) + 2.0 * torch.randn(n, d_a, generator=g)
        b = z @ torch.randn(m, d_b, generator=g) + 2.0 * torch.randn(n, d_b, generator=g)
        return a, b
    la, lb = layers
    a = torch.stack([z @ torch.randn(m, d_a, generator=g) + (1 + i) * torch.randn(n, d_a, generator=g)
                     for i in range(la)], dim=1)
    b = torch.stack([z @ torch.randn(m, d_b, generator=g) + (1 + 0.3 * j) * torch.randn(n, d_b, generator=g)
                     for j in range(lb)], dim=1)
    return a, b


def bench_mutual_knn(n, d, k, repeat):
    a, b = shared_latent(n, d, d)
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    wall, cpu, out = timed_pair(lambda: plain_mutual_knn(a, b, k), lambda: metrics.mutual_knn(a, b, k), repeat)
    assert abs(out["plain"] - out["fast"]) < 1e-5, out
    return dict(n=n, d=d, k=k, repeat=repeat, plain_s=wall["plain"], prhlib_s=wall["fast"],
                ratio=wall["plain"] / wall["fast"], plain_cpu_s=cpu["plain"], prhlib_cpu_s=cpu["fast"],
                cpu_ratio=cpu["plain"] / cpu["fast"], score=out["fast"])


def bench_best_layer_pair(n, la, lb, d_a, d_b, k, repeat):
    a, b = shared_latent(n, d_a, d_b, layers=(la, lb))
    wall, cpu, out = timed_pair(lambda: plain_best_layer_pair(a, b, k),
                                lambda: metrics.best_layer_pair(a, b, metric="mutual_knn", k=k), repeat)
    (s_plain, ij_plain), (s_fast, ij_fast) = out["plain"], out["fast"]
    assert abs(s_plain - s_fast) < 1e-5 and tuple(ij_plain) == tuple(ij_fast), out
    return dict(n=n, layers=[la, lb], d=[d_a, d_b], k=k, repeat=repeat, plain_s=wall["plain"],
                prhlib_s=wall["fast"], ratio=wall["plain"] / wall["fast"], plain_cpu_s=cpu["plain"],
                prhlib_cpu_s=cpu["fast"], cpu_ratio=cpu["plain"] / cpu["fast"], score=s_fast,
                layers_argmax=list(ij_fast))


BIG_CHILD = """
import sys, time, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from prhlib import metrics
n, d, k = {n}, {d}, {k}
g = torch.Generator().manual_seed(0)
z = torch.randn(n, 16, generator=g)
a = torch.nn.functional.normalize(z @ torch.randn(16, d, generator=g) + 2 * torch.randn(n, d, generator=g), dim=-1)
b = torch.nn.functional.normalize(z @ torch.randn(16, d, generator=g) + 2 * torch.randn(n, d, generator=g), dim=-1)
def high_water_kb():
    # VmHWM: peak resident set of this process image (ru_maxrss would include the parent's peak,
    # which Linux carries over through fork + exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
base = high_water_kb()
t0 = time.perf_counter()
s = metrics.mutual_knn(a, b, k)
t = time.perf_counter() - t0
peak = high_water_kb()
print(s, t, base, peak)
"""


def bench_big_memory(n, d, k, threads):
    code = BIG_CHILD.format(root=str(HERE.parent), threads=threads, n=n, d=d, k=k)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    score, seconds, base_kb, peak_kb = float(out[0]), float(out[1]), int(out[2]), int(out[3])
    dense_gb = (3 * n * n * 4 + n * n * 8) / 1e9  # two float32 masks + their product + int64 argsort
    return dict(n=n, d=d, k=k, seconds=seconds, score=score, peak_rss_gb=peak_kb / 1e6 * 1.024,
                rss_before_call_gb=base_kb / 1e6 * 1.024, plain_dense_would_need_gb=dense_gb)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "metrics.json"))
    parser.add_argument("--only", choices=["knn", "layers", "big"], help="run one benchmark (nothing is written)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.quick:
        cfg = dict(knn=(1024, 256, 10, 1), layers=(256, 4, 6, 64, 96, 10, 1), big=(8000, 64, 10))
    else:
        cfg = dict(knn=(4096, 768, 10, 5), layers=(1024, 13, 25, 768, 1024, 10, 1), big=(40000, 64, 10))
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = float("nan")

    results = dict(machine=dict(cpu_count=os.cpu_count(), threads=args.threads, torch=torch.__version__,
                                python=platform.python_version(), platform=platform.platform()),
                   date=time.strftime("%Y-%m-%d"), quick=args.quick, load_average_at_start=load)
    print(f"{os.cpu_count()} CPUs, {args.threads} threads, 1-minute load average at start: {load:.1f}")

    if args.only:
        fn = {"knn": bench_mutual_knn, "layers": bench_best_layer_pair,
              "big": lambda *c: bench_big_memory(*c, threads=args.threads)}[args.only]
        r = fn(*cfg[args.only])
        print(json.dumps(r, indent=1))
        return r

    r = bench_mutual_knn(*cfg["knn"])
    results["mutual_knn"] = r
    print(f"mutual_knn n={r['n']} d={r['d']} k={r['k']}: plain {r['plain_s']:.2f} s, prhlib {r['prhlib_s']:.2f} s"
          f" -> {r['ratio']:.1f}x wall, {r['cpu_ratio']:.1f}x CPU time (target >= 5x)")

    r = bench_best_layer_pair(*cfg["layers"])
    results["best_layer_pair"] = r
    print(f"best_layer_pair {r['layers'][0]}x{r['layers'][1]} layers, n={r['n']}: plain {r['plain_s']:.1f} s, "
          f"prhlib {r['prhlib_s']:.2f} s -> {r['ratio']:.1f}x wall, {r['cpu_ratio']:.1f}x CPU time (target >= 10x)")

    r = bench_big_memory(*cfg["big"], threads=args.threads)
    results["mutual_knn_big"] = r
    print(f"mutual_knn n={r['n']} d={r['d']}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB "
          f"(interpreter + torch before the call: {r['rss_before_call_gb']:.2f} GB; dense masks would need "
          f"{r['plain_dense_would_need_gb']:.1f} GB; target <= 2.5 GB)")

    if not args.quick:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
