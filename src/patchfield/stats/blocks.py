"""What the statistics need to know about a model: its blocks, patch size and class token.

These lookups belong in the introspection module (``patchfield.introspect``) once it exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import UnsupportedModelError

__all__ = ["BlockNorms", "block_output_norms", "has_class_token", "patch_size_of", "transformer_blocks"]


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's transformer blocks in order (timm ``model.blocks``; Hugging Face ViT layers).

    Raises:
        TypeError: no block list is found; the message names the class.
    """
    if isinstance(getattr(model, "blocks", None), nn.Module):
        return list(model.blocks)
    base = getattr(model, "vit", model)
    encoder = getattr(base, "encoder", None)
    for blocks in (getattr(encoder, "layer", None), getattr(base, "layers", None)):
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return list(blocks)
    raise UnsupportedModelError(
        f"cannot find the transformer blocks of {type(model).__name__}: expected timm `model.blocks` or a "
        "Hugging Face ViT's `vit.encoder.layer` / `vit.layers`"
    )


def patch_size_of(model: nn.Module) -> tuple[int, int] | None:
    """``(ph, pw)`` in pixels of the model input, or ``None`` when the model does not say."""
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "patch_size", None)
    if size is None:
        size = getattr(getattr(model, "config", None), "patch_size", None)
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def has_class_token(model: nn.Module) -> bool:
    """Whether token 0 is a class token (timm: ``cls_token``; Hugging Face ViT: always)."""
    if hasattr(model, "patch_embed"):
        return getattr(model, "cls_token", None) is not None
    return getattr(model, "config", None) is not None


class BlockNorms:
    """L2 norms of every token at every block output, collected during forwards (see :func:`block_output_norms`)."""

    def __init__(self, count: int) -> None:
        self._norms: list[torch.Tensor | None] = [None] * count

    def record(self, index: int, out) -> None:
        hidden = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
            raise RuntimeError(f"block {index} returned {type(hidden).__name__}, expected tokens [B, T, D]")
        self._norms[index] = torch.linalg.vector_norm(hidden.detach().float(), dim=-1)

    def result(self) -> torch.Tensor:
        """``[B, blocks, T]`` float32 norms of the last forward."""
        missing = [i for i, n in enumerate(self._norms) if n is None]
        if missing:
            raise RuntimeError(f"blocks {missing} were not called in the forward pass")
        return torch.stack(self._norms, dim=1)


@contextmanager
def block_output_norms(model: nn.Module) -> Iterator[BlockNorms]:
    """Record the token norms at every block output during forwards inside the block (hooks removed on exit).

    >>> from timm.models.vision_transformer import VisionTransformer
    >>> m = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=4, num_heads=2).eval()
    >>> with block_output_norms(m) as norms:
    ...     _ = m(torch.zeros(2, 3, 32, 32))
    >>> tuple(norms.result().shape)  # [B, blocks, T]: 1 class token + 16 patches
    (2, 4, 17)
    """
    blocks = transformer_blocks(model)
    norms = BlockNorms(len(blocks))
    handles = [b.register_forward_hook(lambda _m, _i, out, i=i: norms.record(i, out)) for i, b in enumerate(blocks)]
    try:
        yield norms
    finally:
        for h in handles:
            h.remove()
