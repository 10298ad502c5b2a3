"""Models during training: the grid of a timm ViT and DDP unwrapping.

``build_model`` (a timm ViT patched into AWD-ViT or WinfT) lives in :mod:`patchfield.loading`, the forward
of each kind in :meth:`patchfield.kinds.Kind.forward`.
"""

from __future__ import annotations

from ..introspect import model_grid, unwrap
from ..loading import build_model

__all__ = ["build_model", "model_grid", "unwrap"]  # model_grid, unwrap: from patchfield.introspect
