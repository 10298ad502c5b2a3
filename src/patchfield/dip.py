"""Indiscriminative patches, DIP (paper Sec. 4.2, docs/spec.md §4)."""

from __future__ import annotations

import torch

from .checks import check_beta
from .grid import round_half_up

__all__ = ["column_variance", "indiscriminative_patches", "patch_keep_mask"]


def column_variance(U: torch.Tensor) -> torch.Tensor:
    """Population variance of each column ``u'_p = U[:, p]``, ``[..., N]``.

    >>> column_variance(torch.tensor([[1., 0.], [3., 0.]])).tolist()
    [1.0, 0.0]
    """
    if not isinstance(U, torch.Tensor) or U.dim() < 2 or U.shape[-1] != U.shape[-2]:
        raise ValueError(f"U must have shape [..., N, N]; got {getattr(U, 'shape', type(U).__name__)}")
    return U.var(dim=-2, correction=0)


def indiscriminative_patches(U: torch.Tensor, beta: float) -> torch.Tensor:
    """The set ``D``: the ``round(β·N)`` patches whose column of ``U`` varies least.

    Ties are broken by the smaller patch index first (a stable sort).

    Args:
        U: uncertainty map ``[..., N, N]``.
        beta: share of patches dropped, in ``[0, 1)``.

    Returns:
        Boolean ``[..., N]``, True for the patches in ``D``.

    >>> U = torch.tensor([[1., 0., 5.], [3., 0., 5.], [2., 0., 4.]])
    >>> indiscriminative_patches(U, 0.34).tolist()  # round(1.02) = 1 patch: column 1 is constant
    [False, True, False]
    """
    check_beta(beta)
    var = column_variance(U)
    if not torch.isfinite(var).all():
        raise ValueError("U holds NaN or Inf values")
    count = round_half_up(float(beta) * var.shape[-1])
    dropped = torch.zeros_like(var, dtype=torch.bool)
    if count:
        order = var.sort(dim=-1, stable=True).indices[..., :count]
        dropped.scatter_(-1, order, True)
    return dropped


def patch_keep_mask(dropped: torch.Tensor) -> torch.Tensor:
    """The multiplicative mask ``M`` of the paper: 0 for patches in ``D``, else 1 (float)."""
    return (~dropped).float()
