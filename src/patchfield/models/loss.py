"""WinfT's window loss ``L_BCE`` (paper Eq. 11, docs/spec.md §8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["window_bce_loss"]


def window_bce_loss(window_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_BCE``: binary cross-entropy of ``w' = sigmoid(s)`` against the ground-truth windows.

    Computed from the logits (``binary_cross_entropy_with_logits``, stable for the large raw
    ``QKᵀ`` values), in float32 at least, averaged over the ``N²`` pairs, the layers and the batch.

    Args:
        window_logits: float ``[B, L, N, N]``, WinfT's per-layer ``s`` on the patch block
            (``model(x, return_window_logits=True)[1]``).
        target: ``w_gt``, boolean (or 0/1 float) ``[B, N, N]``: row ``p`` is the indicator of
            ``S_p`` (``responsive_field(windows, D).mask()``). ``[N, N]`` is used for every image.

    Returns:
        A scalar tensor.

    >>> s = torch.zeros(1, 2, 2, 2)
    >>> round(float(window_bce_loss(s, torch.eye(2, dtype=torch.bool)[None])), 6)  # log 2
    0.693147
    """
    if not isinstance(window_logits, torch.Tensor) or window_logits.dim() != 4:
        raise ValueError(
            "window_logits must be a float [B, L, N, N] tensor (model(x, return_window_logits=True)[1]); "
            f"got {getattr(window_logits, 'shape', type(window_logits).__name__)}"
        )
    b, _, n, n2 = window_logits.shape
    if n != n2:
        raise ValueError(f"window_logits must be square in its last two dimensions; got {tuple(window_logits.shape)}")
    if not isinstance(target, torch.Tensor) or target.dim() not in (2, 3) or target.shape[-2:] != (n, n):
        raise ValueError(
            f"target must be a boolean [B, {n}, {n}] tensor (responsive_field(windows, D).mask()); "
            f"got {getattr(target, 'shape', type(target).__name__)}"
        )
    if target.dim() == 3 and target.shape[0] != b:
        raise ValueError(f"target holds {target.shape[0]} images but window_logits {b}")
    logits = window_logits.float() if window_logits.dtype in (torch.float16, torch.bfloat16) else window_logits
    target = target.to(logits.dtype)
    target = target[:, None] if target.dim() == 3 else target
    return F.binary_cross_entropy_with_logits(logits, target.expand_as(logits))
