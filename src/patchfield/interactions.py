"""Counting interactions: the one rule behind every ``O`` and ``E_O`` (docs/spec.md §3, §5, §8).

An interaction is a (query patch, key patch) pair that may attend, i.e. a ``True`` entry of a
boolean ``[..., N, N]`` mask on the patch block (rows queries, columns keys). ``O`` of an
image is the number of its mask's ``True`` entries and ``E_O`` the mean over images.
Windows and responsive fields count the same from their compact form
(:meth:`patchfield.Windows.interactions`, :meth:`patchfield.ResponsiveField.interactions`);
tests check both agree.
"""

from __future__ import annotations

import torch

__all__ = ["count_interactions", "expected_interactions"]


def count_interactions(mask: torch.Tensor) -> torch.Tensor:
    """The interactions of each ``[N, N]`` mask: ``[..., N, N]`` boolean → ``[...]`` int64.

    >>> count_interactions(torch.tensor([[True, False], [True, True]]))
    tensor(3)
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() < 2 or mask.shape[-1] != mask.shape[-2]:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"an interaction mask must be a boolean [..., N, N] tensor; got {shape}")
    if mask.dtype != torch.bool:
        raise ValueError(f"an interaction mask must be boolean; got {mask.dtype} (compare with a threshold first)")
    return mask.sum(dim=(-2, -1), dtype=torch.int64)


def expected_interactions(counts: torch.Tensor) -> float:
    """``E_O``: the mean of per-image interaction counts (float64 mean)."""
    counts = torch.as_tensor(counts)
    if counts.numel() == 0:
        raise ValueError("no images to average interactions over")
    return float(counts.double().mean())
