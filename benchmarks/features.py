"""Feature extraction of 1,024 real images through EfficientNet-Lite0: cold (no cache), then warm (cache hit).

Images: the 785 tuxpaint stamps and the first 239 rendered emoji. The cold run uses an empty, temporary
cache folder; the warm run repeats the identical call. Prints wall and CPU seconds of each run, the
warm/cold ratio (target: cold <= 60 s on a 2-core CPU, warm < 10% of cold) and the machine's load
average, since a shared machine slows the cold run down.

Run: ``.venv/bin/python benchmarks/features.py`` (or ``make bench``).
"""

from __future__ import annotations

import os
import tempfile
import time

# Threads that wait for work sleep instead of spinning: on a shared machine spinning OpenMP threads fight the
# other processes for the cores (measured: 2x slower convolutions at a load average of 12). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PRH_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="prh-bench-") as tmp:
        os.environ["PRH_CACHE_DIR"] = tmp
        from prhlib import config, data, features, models

        config.setup(quiet=True)
        tux, _ = data.load_pairs("tuxpaint")
        emo, _ = data.load_pairs("emoji")
        images = list(tux) + list(emo[: 1024 - len(tux)])
        assert len(images) == 1024
        models.get("efficientnet_lite0")  # model loading is not part of the measurement

        cold, t_cold, c_cold = timed(lambda: features.extract("efficientnet_lite0", images, layers="all"))
        warm, t_warm, c_warm = timed(lambda: features.extract("efficientnet_lite0", images, layers="all"))
        assert (cold == warm).all(), "the cache returned different features"
        load = os.getloadavg()[0]
        print(f"images: {len(images)}  features: {cold.shape}  torch threads: {__import__('torch').get_num_threads()}"
              f"  OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
        print(f"cold (extract + write cache): {t_cold:7.2f} s wall  {c_cold:7.2f} s CPU")
        print(f"warm (read cache)           : {t_warm:7.2f} s wall  {c_warm:7.2f} s CPU")
        print(f"warm / cold ratio           : {t_warm / t_cold:7.4f}  (target < 0.10)")
        print(f"cold within 60 s            : {'yes' if t_cold <= 60 else 'NO'}  (load average {load:.1f} "
              f"on {os.cpu_count()} cores during the run)")


if __name__ == "__main__":
    main()
