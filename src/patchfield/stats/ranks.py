"""Ranks with ties averaged and Spearman's rank correlation, vectorised (no loop over values)."""

from __future__ import annotations

import math

import torch

__all__ = ["average_ranks", "spearman"]


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, tied values sharing the mean of their ranks (float64).

    >>> average_ranks(torch.tensor([10., 30., 20., 30.])).tolist()
    [1.0, 3.5, 2.0, 3.5]
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 1:
        raise ValueError(f"ranks need a 1-D tensor, got {getattr(x, 'shape', type(x).__name__)}")
    values, order = torch.sort(x.to(torch.float64), stable=True)
    _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)   # 1-based rank of each group's last member
    mean_rank = ends - (counts.to(torch.float64) - 1) / 2  # mean of first..last
    ranks = torch.empty_like(values)
    ranks[order] = mean_rank[inverse]
    return ranks


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors (Pearson's on average ranks); NaN if either is constant.

    >>> spearman(torch.tensor([1., 2., 3.]), torch.tensor([10., 40., 90.]))
    1.0
    """
    if x.shape != y.shape:
        raise ValueError(f"spearman needs tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum()) / den if den > 0 else math.nan
