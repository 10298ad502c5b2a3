"""Linear warm-up followed by a cosine decay, per optimiser step (docs/spec.md §9)."""

from __future__ import annotations

import math

import torch

__all__ = ["WarmupCosine", "warmup_cosine_lr", "build_scheduler"]


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """The learning rate of optimiser step ``step`` (0-based, the ``step``-th update).

    Warm-up rises linearly, ``base_lr·(step + 1)/warmup_steps`` for ``step < warmup_steps``, so the
    last warm-up step uses ``base_lr``. Then a half cosine from ``base_lr`` down to ``min_lr``:
    ``min_lr + (base_lr − min_lr)·(1 + cos(π·t/T))/2`` with ``t = step − warmup_steps`` and
    ``T = total_steps − warmup_steps``.

    >>> [round(warmup_cosine_lr(s, 6, 2, 1.0), 4) for s in range(6)]
    [0.5, 1.0, 1.0, 0.8536, 0.5, 0.1464]
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(step - warmup_steps, span)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t / span))


class WarmupCosine:
    """A picklable factor function for ``torch.optim.lr_scheduler.LambdaLR`` (its state is saved).

    The factor multiplies the optimiser's initial learning rate ``base_lr``.
    """

    def __init__(self, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> None:
        if warmup_steps >= total_steps:
            raise ValueError(
                f"warm-up of {warmup_steps} steps leaves no room in a run of {total_steps} steps: "
                "lower --warmup-steps or train longer"
            )
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        return warmup_cosine_lr(step, self.total_steps, self.warmup_steps, 1.0, self.min_ratio)


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :class:`WarmupCosine`; call ``scheduler.step()`` after every optimiser step."""
    base = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_lr / base))
