"""The training objective ``L_total = λ1·L_CE + λ2·L_BCE`` (paper Eq. 11, 12, docs/spec.md §8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["window_bce", "total_loss"]


def window_bce(window_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE between WinfT's window logits ``s`` ``[B, L, N, N]`` and ``w_gt`` ``[B, N, N]`` (Eq. 11).

    Uses :func:`patchfield.models.window_bce_loss` (mean over the ``N²`` pairs, the layers and
    the batch), computed from the logits for stability.
    """
    from ..models import window_bce_loss

    return window_bce_loss(window_logits, target)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision (autocast) logits in float32; float32/float64 unchanged."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def total_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    window_logits: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    lambda_ce: float = 1.0,
    lambda_bce: float = 1.0,
) -> dict[str, torch.Tensor]:
    """``{"loss", "ce", "bce"}`` with ``loss = λ1·CE + λ2·BCE``; ``bce`` is 0 without window logits.

    Args:
        logits: class logits ``[B, C]``.
        labels: class indices ``[B]``.
        window_logits: WinfT's per-layer ``s`` ``[B, L, N, N]``, or ``None`` for the other kinds.
        target: ``w_gt`` boolean ``[B, N, N]``; required with ``window_logits``.
        lambda_ce, lambda_bce: the weights ``λ1``, ``λ2``.
    """
    ce = F.cross_entropy(_at_least_float32(logits), labels)
    if window_logits is None:
        bce = torch.zeros((), device=logits.device)
    else:
        if target is None:
            raise ValueError("window logits need the ground-truth windows w_gt (a --groundtruth store)")
        bce = window_bce(_at_least_float32(window_logits), target)
    return {"loss": lambda_ce * ce + lambda_bce * bce, "ce": ce, "bce": bce}
