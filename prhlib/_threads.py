"""The one thread policy of prhlib: a scoped limit around the few measured hot spots.

Small dense products (neighbour lists of a few thousand rows, the per-permutation work of a
calibration) cost more in thread wake-ups than they gain; measured on a shared 2-core machine a maxT
calibration ran 10-15x faster on one thread. The library wraps exactly those spots in
:func:`limited`; nothing public is decorated, and no chapter needs to think about threads.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

__all__ = ["limited"]


@contextmanager
def limited(n: int = 1):
    """Run PyTorch and the BLAS/OpenMP pools on at most ``n`` threads inside the block.

    The previous settings are restored on exit, also after an exception.
    """
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(min(n, before))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)
