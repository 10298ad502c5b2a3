"""Models during training: the grid of a timm ViT, the forward of each kind, DDP unwrapping.

``build_model`` (a timm ViT patched into AWD-ViT or WinfT) lives in :mod:`patchfield.loading`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..interactions import count_interactions
from ..introspect import model_grid, unwrap
from ..loading import build_model

__all__ = ["build_model", "model_grid", "forward_kind", "unwrap"]  # model_grid, unwrap: from patchfield.introspect


def forward_kind(
    model: nn.Module,
    kind: str,
    images: torch.Tensor,
    field_mask: torch.Tensor | None = None,
    dropped: torch.Tensor | None = None,
    window_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Run a model of ``kind`` on a batch: ``(logits, window_logits or None, interactions [B])``.

    AWD kinds attend within ``field_mask`` (``[B, N, N]``); ``awd-dip`` also zeroes the
    patches in ``dropped``. WinfT returns its per-layer window logits when ``window_logits``.
    ``interactions`` are the forward's ``E_O`` summands per image (float, on the model's device):
    ``vit`` ``N²``; the AWD kinds the ones of the mask they attend with (the windows' ``O`` for
    ``awd``, ``Σ_p |S_p|`` for ``awd-dip``, SPEC §3, §5); WinfT the mean over layers of the ones
    of its ``W`` (§8). All counted by :func:`patchfield.interactions.count_interactions`.
    """
    if kind == "vit":
        n = model_grid(model).n
        return model(images), None, torch.full((images.shape[0],), float(n * n), device=images.device)
    if kind in ("awd", "awd-dip"):
        if field_mask is None:
            raise ValueError(f"kind {kind!r} needs the fields of a ground-truth store")
        logits = model(images, field_mask=field_mask, dropped=dropped if kind == "awd-dip" else None)
        return logits, None, count_interactions(field_mask).float()
    if kind.startswith("winft"):
        if window_logits:
            logits, s, counts = model(images, return_window_logits=True, return_interactions=True)
            return logits, s, counts
        logits, counts = model(images, return_interactions=True)
        return logits, None, counts
    raise ValueError(f"unknown kind {kind!r}")
