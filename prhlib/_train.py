"""The one gradient-descent loop of prhlib: the zoo's models (:func:`prhlib.zoo.train`) and the
contrastive learners of :mod:`prhlib.pmi` (:func:`prhlib.pmi.train`) both step through it.

Each caller keeps what differs between them: how the model is built and seeded, the optimiser
(Adam with a linear decay, or AdamW), and how batches are drawn (a fresh permutation per epoch, or
pairs drawn with replacement). Batches are passed as a lazy iterable, so a batch is drawn (and its
random numbers consumed) just before its step, in the order the caller wrote.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import torch

__all__ = ["descend"]


def descend(optimiser: torch.optim.Optimizer, batches: Iterable, loss_of: Callable,
            scheduler=None, what: str = "") -> Iterator[float]:
    """Take one optimiser step per batch and yield that step's loss (a float).

    For each batch: ``loss = loss_of(batch)``, clear the gradients, back-propagate, step the
    optimiser (then ``scheduler``, if given). The loss is yielded after the update, so the caller
    can record it or inspect the model between steps (e.g. keep a checkpoint).

    Parameters
    ----------
    optimiser : torch.optim.Optimizer
    batches : iterable
        Anything ``loss_of`` takes; drawn one at a time, just before its step.
    loss_of : callable
        ``batch -> scalar tensor``.
    scheduler : torch.optim.lr_scheduler.LRScheduler, optional
        Stepped after every optimiser step.
    what : str
        Named in the error message (e.g. ``"for <config>"``).

    Raises
    ------
    RuntimeError
        when a loss is NaN or infinite (the run diverged: lower the learning rate).
    """
    for batch in batches:
        loss = loss_of(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if scheduler is not None:
            scheduler.step()
        value = loss.item()
        if not math.isfinite(value):
            where = f" {what}" if what else ""
            raise RuntimeError(f"training diverged (loss {value}){where}; lower lr")
        yield value
