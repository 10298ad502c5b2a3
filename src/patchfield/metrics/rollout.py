"""Attention rollout (Abnar & Zuidema, 2020), the reference patch ordering of the faithfulness metrics."""

from __future__ import annotations

import torch

from ..capture import AttentionMaps

__all__ = ["attention_rollout", "rollout_scores"]


def attention_rollout(attn: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout over layers: ``R = Â_L ⋯ Â_1`` with ``Â_l = r·I + (1 − r)·mean_heads(A_l)``.

    Each ``Â_l`` is rescaled to rows summing to 1 (they already do for softmax attention); the
    product is taken in float64.

    Args:
        attn: attention ``[..., L, k, T, T]`` (``AttentionMaps.attn``).
        residual: weight ``r`` of the identity (the residual connection), in ``[0, 1]``.

    Returns:
        ``R`` ``[..., T, T]``, float64: how much token ``j`` flows into token ``i`` after all layers.

    >>> a = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])  # L = 1, k = 1, T = 2
    >>> attention_rollout(a).tolist()
    [[0.75, 0.25], [0.0, 1.0]]
    """
    if not isinstance(attn, torch.Tensor) or attn.dim() < 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attention must be [..., L, k, T, T]; got {getattr(attn, 'shape', type(attn).__name__)}")
    if not 0.0 <= float(residual) <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    a = attn.double().mean(-3)  # [..., L, T, T]
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    a = residual * eye + (1.0 - residual) * a
    a = a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    out = a[..., 0, :, :]
    for layer in range(1, a.shape[-3]):
        out = a[..., layer, :, :] @ out
    return out


def rollout_scores(maps: AttentionMaps, residual: float = 0.5) -> torch.Tensor:
    """Per-patch relevance from attention rollout, ``[B, N]`` float64.

    With prefix tokens, the rows of the prefix tokens (class, distillation, registers) are
    averaged; without them (global-pool models), the rows of all patches are.
    """
    r = attention_rollout(maps.attn, residual)  # [B, T, T]
    p = maps.num_prefix_tokens
    rows = r[:, :p, p:] if p > 0 else r[:, :, :]
    return rows.mean(1)
