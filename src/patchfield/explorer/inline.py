"""``patchfield.explore(model, image)``: the explorer page of one image as an object Jupyter shows inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checks import check_rates
from ..display import Explorer
from .build import explorer_html

__all__ = ["INLINE_FULL_ATTENTION_BUDGET", "explore"]

INLINE_FULL_ATTENTION_BUDGET = 1_000_000
"""Largest ``L·k·N²`` for which ``explore(full_attention="auto")`` embeds every layer's and head's attention: a
notebook keeps its outputs, so the inline page stays near 1 MB (ViT-B/16 at 224 gets the per-layer view)."""


@torch.no_grad()
def explore(model: nn.Module, image: Any, alpha: float = 0.1, beta: float = 0.2, *, patch: int | None = None,
            full_attention: str | bool = "auto", forward_kwargs: dict[str, Any] | None = None,
            title: str | None = None, height: int = 720) -> Explorer:
    """The interactive explorer of ``image`` under ``model`` (what ``patchfield explore`` writes), shown inline.

    Args:
        model: a timm ViT-family model or a Hugging Face ViT, in eval mode.
        image: a file path, a PIL image (both read with the model's preprocessing,
            :class:`patchfield.preprocess.Preprocess`), or a normalised model input ``[3, H, W]`` / ``[1, 3, H, W]``.
        alpha: the α slider's initial value.
        beta: the β slider's initial value.
        patch: the patch selected when the page opens (the centre by default).
        full_attention: embed every layer's and head's attention: ``True``, ``False`` or ``"auto"`` (when
            ``L·k·N² ≤`` :data:`INLINE_FULL_ATTENTION_BUDGET`; ``patchfield explore`` allows 8 MB).
        forward_kwargs: keyword arguments of the model's forward (an AWD-ViT's ``field_mask``).
        title: the page's title.
        height: the inline frame's height in pixels.

    Returns:
        an :class:`patchfield.display.Explorer`: displayed in a notebook, ``.save(path)`` writes the page.
    """
    from ..capture import block_output_norms, capture_attention
    from ..figures.paper import _load
    from ..introspect import patch_size_of
    from ..preprocess import Preprocess

    check_rates(alpha, beta)
    if isinstance(image, torch.Tensor) and image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    x, crop, _ = _load(image, None, Preprocess.for_model(model))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with block_output_norms(model) as norms:  # the same forward: token norms for the artefact toggle
        maps = capture_attention(model, x[None].to(device), forward_kwargs=forward_kwargs)
    block_norms = norms.result()[0, :, maps.num_prefix_tokens:]  # [blocks, N]
    if full_attention == "auto":
        _, layers, heads = maps.attn.shape[:3]
        full_attention = layers * heads * maps.grid.n ** 2 <= INLINE_FULL_ATTENTION_BUDGET
    name = f": {Path(image).name}" if isinstance(image, (str, Path)) else ""
    page = explorer_html(maps, crop, 0, alpha, beta, full_attention=full_attention, patch=patch,
                         model_name=type(model).__name__, title=title or f"patchfield explorer{name}",
                         patch_size=patch_size_of(model), norms=block_norms[-1], norm_block=block_norms.shape[0] - 1)
    return Explorer(page, height)
