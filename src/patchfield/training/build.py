"""Build the model of a training kind: a timm ViT, patched into AWD-ViT or WinfT."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..interactions import count_interactions
from ..introspect import model_grid, unwrap

__all__ = ["build_model", "model_grid", "forward_kind", "unwrap"]  # model_grid, unwrap: from patchfield.introspect


def _load_weights(model: nn.Module, weights: str | Path) -> None:
    """Load local starting weights; a classifier head of another size is left freshly initialised."""
    from ..loading import load_state_dict, prepare_state_dict

    sd = prepare_state_dict(load_state_dict(weights), model)
    own = model.state_dict()
    head = [k for k in sd if k.startswith("head.") and k in own and sd[k].shape != own[k].shape]
    if head:
        print(f"note: {weights} has a classifier head of another size; training a new head", file=sys.stderr)
        sd = {k: v for k, v in sd.items() if k not in head}
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items() if k in own
              and v.shape != own[k].shape]
    missing = [k for k in own if k not in sd and k not in head]
    unexpected = [k for k in sd if k not in own]
    if shapes or missing or unexpected:
        raise ValueError(
            f"weights {weights} do not fit the model (check --model and --model-kwargs): shapes differ for "
            f"{shapes[:4]}, missing keys {missing[:6]}, unexpected keys {unexpected[:6]}"
        )
    model.load_state_dict(sd, strict=False)


def build_model(
    name: str,
    kind: str,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    weights: str | Path | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """A timm ViT for ``kind`` (``vit``, ``awd``, ``awd-dip``, ``winft-paper``, ``winft-restrict``).

    Args:
        name: timm architecture name.
        kind: the training kind; AWD kinds get :func:`patchfield.models.apply_awd`, WinfT kinds
            :func:`patchfield.models.apply_winft` in the kind's mode.
        num_classes: classifier size.
        image_size: input size (position embeddings of ``weights`` are resampled to it).
        weights: optional local starting weights.
        model_kwargs: extra ``timm.create_model`` arguments (``patch_size``, ``embed_dim``, ...).
    """
    from ..loading import create_timm_model

    kwargs = dict(model_kwargs or {})
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if image_size is not None:
        kwargs["img_size"] = int(image_size)
    model = create_timm_model(name, **kwargs)
    model_grid(model)
    from ..models import patched_kind

    made = patched_kind(model)
    if made is not None and not kind.startswith(made):
        wanted = "awd or awd-dip" if made == "awd" else "winft-paper or winft-restrict"
        raise ValueError(f"{name} builds a {made} model but --kind is {kind!r}: pass --kind {wanted}")
    if weights is not None:
        _load_weights(model, weights)
    if kind in ("awd", "awd-dip"):
        from ..models import apply_awd

        model = apply_awd(model)
    elif kind.startswith("winft"):
        from ..models import apply_winft

        model = apply_winft(model, mode=kind.split("-", 1)[1])
    elif kind != "vit":
        raise ValueError(f"unknown kind {kind!r}")
    return model


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
