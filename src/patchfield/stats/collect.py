"""All per-head statistics and the artefact tokens of a batch from one forward pass.

One forward feeds three consumers layer by layer: the uncertainty accumulator (``U``, then
``D`` and the column variances), the per-head reductions (mean distance, entropy, class-token
attention) and forward hooks on the blocks (token norms). No ``[B, L, k, T, T]`` tensor is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..capture import attention_hooks, block_output_norms
from ..checks import check_beta
from ..dip import column_variance, indiscriminative_patches
from ..grid import Grid
from ..introspect import has_class_token, patch_size_of
from ..uncertainty import UncertaintyAccumulator
from .heads import class_token_attention, head_reductions, patch_distances
from .mixture import ArtefactFit, artefact_tokens
from .ranks import spearman

__all__ = ["HeadStats", "artefact_overlap", "head_statistics", "summarize_images"]


@dataclass
class HeadStats:
    """Per-head statistics, token norms and artefact tokens of a batch of images.

    Attributes:
        mean_distance: ``[B, L, k]`` mean attention distance in pixels of the model input.
        entropy: ``[B, L, k]`` attention entropy in nats.
        cls_attention: ``[B, L]`` share of the class token's attention on patches (mean of heads), or ``None``.
        cls_map: ``[B, L, N]`` the class token's attention to each patch (mean of heads), or ``None``.
        norms: ``[B, blocks, N]`` patch-token L2 norms at every block output.
        dropped: ``[B, N]`` the set ``D`` at ``beta``; column_variance: ``[B, N]`` DIP's ranking.
        artefacts: one :class:`ArtefactFit` per image, on the norms of block ``artefact_block``.
        grid: the patch grid.
        patch_size: ``(ph, pw)`` in pixels.
        num_prefix_tokens: ``P``.
        beta: the rate of ``D``.
        artefact_block: the block whose output norms define the artefact tokens.
    """

    mean_distance: torch.Tensor
    entropy: torch.Tensor
    cls_attention: torch.Tensor | None
    cls_map: torch.Tensor | None
    norms: torch.Tensor
    dropped: torch.Tensor
    column_variance: torch.Tensor
    artefacts: list[ArtefactFit]
    grid: Grid
    patch_size: tuple[float, float]
    num_prefix_tokens: int
    beta: float
    artefact_block: int

    @property
    def batch_size(self) -> int:
        return self.mean_distance.shape[0]

    def _repr_html_(self) -> str:
        """Jupyter: per-layer means, the artefact summary and the per-head figure."""
        from ..display import stats_html

        return stats_html(self)

    def image_record(self, index: int) -> dict[str, Any]:
        """The ``per_image`` entry of ``stats.json`` for image ``index`` (schema in docs/formats.md)."""
        fit = self.artefacts[index]
        norms = self.norms[index, self.artefact_block]
        overlap = artefact_overlap(fit.mask(self.grid.n), self.dropped[index], norms, self.column_variance[index])
        return {
            "mean_distance": _nested(self.mean_distance[index]),
            "entropy": _nested(self.entropy[index]),
            "cls_attention": None if self.cls_attention is None else _nested(self.cls_attention[index]),
            "mean_norm": _nested(self.norms[index].mean(-1)),
            "norms": _nested(norms),
            "artefacts": fit.to_json(),
            "dropped": torch.nonzero(self.dropped[index]).flatten().tolist(),
            **overlap,
        }


def _number(v: float) -> float | None:
    return round(float(v), 6) if math.isfinite(float(v)) else None


def _nested(t: torch.Tensor):
    if t.dim() == 0:
        return _number(t)
    return [_nested(r) for r in t] if t.dim() > 1 else [_number(v) for v in t.tolist()]


def artefact_overlap(artefacts: torch.Tensor, dropped: torch.Tensor, norms: torch.Tensor,
                     col_variance: torch.Tensor) -> dict[str, float | None]:
    """How the artefact tokens of one image relate to its ``D``.

    Returns:
        ``artefact_share_in_D``: share of the artefact tokens that are in ``D`` (``None`` without artefacts);
        ``D_share``: ``|D| / N``, the share a random token set would have in ``D``;
        ``spearman_norm_colvar``: Spearman's rank correlation between token norm and the column variance
        of ``U`` over all patches (``None`` when either is constant).
    """
    count = int(artefacts.sum())
    share = float((artefacts & dropped).sum()) / count if count else None
    rho = spearman(norms.cpu(), col_variance.cpu())
    return {
        "artefact_share_in_D": share,
        "D_share": int(dropped.sum()) / dropped.numel(),
        "spearman_norm_colvar": rho if math.isfinite(rho) else None,
    }


@torch.no_grad()
def head_statistics(model: nn.Module, images: torch.Tensor, *, beta: float = 0.2, block: int = -1,
                    patch_size: tuple[int, int] | None = None) -> HeadStats:
    """Per-head statistics, block-output norms and artefact tokens of a batch, from one forward pass.

    Args:
        model: a timm ViT-family model or a Hugging Face ViT, in eval mode.
        images: ``[B, C, H, W]`` normalised as the model expects.
        beta: share of patches in ``D`` (for the overlap with the artefacts), ``[0, 1)``.
        block: the block whose output norms define the artefact tokens (negative counts from the end).
        patch_size: ``(ph, pw)`` in pixels; by default the model's own (else the input size over the grid).
    """
    check_beta(beta)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a [B, C, H, W] tensor; got {getattr(images, 'shape', images)}")
    acc = UncertaintyAccumulator()
    per_layer: dict[int, tuple] = {}
    state: dict[str, Any] = {}

    def on_layer(layer: int, attn: torch.Tensor) -> None:
        if "prefix" not in state:
            state["prefix"] = adapter.num_prefix_tokens(attn.shape[-1], grid)
        p = state["prefix"]
        patch = attn[..., p:, p:]
        acc.update(patch)
        cls = class_token_attention(attn, p) if state["cls"] and p > 0 else None
        per_layer[layer] = (*head_reductions(patch, grid, size, distances), cls)

    with block_output_norms(model) as recorder, attention_hooks(model, on_layer) as adapter:
        grid = adapter.grid(images)
        size = patch_size or patch_size_of(model) or (images.shape[-2] / grid.height, images.shape[-1] / grid.width)
        distances = patch_distances(grid, size).to(images.device)
        state["cls"] = has_class_token(model)
        adapter.forward(images)
    layers = len(adapter.modules)
    if len(per_layer) != layers:
        raise RuntimeError(
            f"{type(model).__name__}: {len(per_layer)} of {layers} attention layers ran in the forward pass; "
            "compute statistics on the plain eager nn.Module"
        )
    p = state["prefix"]
    order = sorted(per_layer)
    norms = recorder.result()[..., p:].cpu()  # [B, blocks, N]
    count = norms.shape[1]
    if not -count <= block < count:
        raise ValueError(f"block {block} is out of range for a model with {count} blocks")
    block %= count
    U = acc.result()
    cv = column_variance(U).cpu()
    dropped = indiscriminative_patches(U, beta).cpu()
    has_cls = per_layer[order[0]][2] is not None
    return HeadStats(
        mean_distance=torch.stack([per_layer[i][0] for i in order], 1).cpu(),
        entropy=torch.stack([per_layer[i][1] for i in order], 1).cpu(),
        cls_attention=torch.stack([per_layer[i][2][0] for i in order], 1).cpu() if has_cls else None,
        cls_map=torch.stack([per_layer[i][2][1] for i in order], 1).cpu() if has_cls else None,
        norms=norms,
        dropped=dropped,
        column_variance=cv,
        artefacts=[artefact_tokens(norms[b, block].clamp_min(torch.finfo(torch.float32).tiny))
                   for b in range(norms.shape[0])],
        grid=grid,
        patch_size=(float(size[0]), float(size[1])),
        num_prefix_tokens=p,
        beta=float(beta),
        artefact_block=block,
    )


def _mean_of(records: list[dict], key: str):
    values = [r[key] for r in records if r.get(key) is not None]
    if not values:
        return None
    mean = torch.tensor(values, dtype=torch.float64).mean(0)
    return _nested(mean)


def summarize_images(records: list[dict]) -> dict[str, Any]:
    """Averages over images of the ``per_image`` records: the model-level entries of ``stats.json``."""
    if not records:
        raise ValueError("no image records to summarise")
    with_artefacts = [r for r in records if r["artefacts"]["found"]]
    return {
        "images": len(records),
        "mean_distance": _mean_of(records, "mean_distance"),
        "entropy": _mean_of(records, "entropy"),
        "cls_attention": _mean_of(records, "cls_attention"),
        "mean_norm": _mean_of(records, "mean_norm"),
        "images_with_artefacts": len(with_artefacts),
        "artefact_share_in_D": _mean_of(with_artefacts, "artefact_share_in_D"),
        "D_share": _mean_of(records, "D_share"),
        "spearman_norm_colvar": _mean_of(records, "spearman_norm_colvar"),
    }
