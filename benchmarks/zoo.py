"""Benchmark: training a toy-world model on one CPU thread (what prhlib.zoo does) against PyTorch's
default thread count (the plain baseline), in the same run.

Prints wall-clock and CPU seconds per training step for the chapter's largest CNN and ViT, and the
ratio baseline / one thread (> 1 means one thread is faster). On a shared or busy machine the gap
grows: intra-op threads wait for each other.

Usage: python benchmarks/zoo.py
"""

from __future__ import annotations

import os
import time

import torch

from prhlib import world, zoo

STEPS = 60
BATCH = 32


def time_steps(cfg: zoo.TrainConfig, x: torch.Tensor, labels: dict, threads: int) -> tuple[float, float]:
    """Seconds (wall, CPU) per training step of ``cfg``'s model on ``threads`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = zoo.build(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        for i in range(5):  # warm-up
            loss = zoo.LOSSES["classify"](model, {"x": x[:BATCH], "labels": {t: v[:BATCH] for t, v in labels.items()}})
            opt.zero_grad()
            loss.backward()
            opt.step()
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(STEPS):
            sl = slice((i * BATCH) % (len(x) - BATCH), (i * BATCH) % (len(x) - BATCH) + BATCH)
            loss = zoo.LOSSES["classify"](model, {"x": x[sl], "labels": {t: v[sl] for t, v in labels.items()}})
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (time.perf_counter() - wall) / STEPS, (time.process_time() - cpu) / STEPS
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    data = world.sample(512, seed=0)
    x = zoo.image_tensor(data.images)
    default_threads = torch.get_num_threads()
    print(f"cores: {os.cpu_count()}, PyTorch default threads: {default_threads}, {STEPS} steps of {BATCH}")
    for name, cfg in {"CNN-32": zoo.TrainConfig(width=32), "ViT-32": zoo.TrainConfig(arch="vit", depth=2)}.items():
        labels = {t: torch.from_numpy(data.labels(t)) for t in cfg.tasks}
        base_wall, base_cpu = time_steps(cfg, x, labels, default_threads)
        one_wall, one_cpu = time_steps(cfg, x, labels, 1)
        print(f"{name}: default threads {1000 * base_wall:.1f} ms/step wall ({1000 * base_cpu:.1f} ms CPU), "
              f"one thread {1000 * one_wall:.1f} ms/step wall ({1000 * one_cpu:.1f} ms CPU); "
              f"wall ratio default/one = {base_wall / one_wall:.2f}, CPU ratio = {base_cpu / one_cpu:.2f}")


if __name__ == "__main__":
    main()
