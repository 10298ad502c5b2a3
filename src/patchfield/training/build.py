"""Models during training: the grid of a timm ViT, the forward of each kind, DDP unwrapping.

``build_model`` (a timm ViT patched into AWD-ViT or WinfT) lives in :mod:`patchfield.loading`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..grid import Grid
from ..loading import build_model

__all__ = ["build_model", "model_grid", "forward_kind", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def model_grid(model: nn.Module) -> Grid:
    """The patch grid of a timm ViT (``patch_embed.grid_size``)."""
    pe = getattr(unwrap(model), "patch_embed", None)
    size = getattr(pe, "grid_size", None)
    if size is None:
        raise ValueError(f"{type(unwrap(model)).__name__} has no patch_embed.grid_size: not a timm ViT")
    return Grid(int(size[0]), int(size[1]))


def forward_kind(
    model: nn.Module,
    kind: str,
    images: torch.Tensor,
    field_mask: torch.Tensor | None = None,
    dropped: torch.Tensor | None = None,
    window_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run a model of ``kind`` on a batch: ``(logits, window_logits or None)``.

    AWD kinds attend within ``field_mask`` (``[B, N, N]``); ``awd-dip`` also zeroes the
    patches in ``dropped``. WinfT returns its per-layer window logits when ``window_logits``.
    """
    if kind == "vit":
        return model(images), None
    if kind in ("awd", "awd-dip"):
        if field_mask is None:
            raise ValueError(f"kind {kind!r} needs the fields of a ground-truth store")
        return model(images, field_mask=field_mask, dropped=dropped if kind == "awd-dip" else None), None
    if kind.startswith("winft"):
        if window_logits:
            return model(images, return_window_logits=True)
        return model(images), None
    raise ValueError(f"unknown kind {kind!r}")
