"""AWD-ViT: attention restricted to each image's adaptive windows, optionally with DIP (docs/spec.md §4, §7).

:func:`apply_awd` patches a timm ``VisionTransformer`` in place. The patched model's forward
takes the image's responsive field as a boolean ``[B, N, N]`` mask and turns it into one
attention mask ``[B, 1, T, T]`` shared by every layer and head, passed through timm's own
``attn_mask`` path: the fused ``scaled_dot_product_attention`` kernel by default, timm's
explicit softmax path when ``fused_attn`` is off (which is what
:func:`patchfield.capture_attention` switches to, so captured maps show the masked attention
when the field is passed: ``capture_attention(model, x, forward_kwargs={"field_mask": ..., "dropped": ...})``;
capture refuses an AWD-ViT without ``field_mask``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..introspect import model_grid
from ._patch import check_vit, remove_patch, swap_class

__all__ = ["apply_awd", "awd_attention_mask", "AWDViT"]


def _check_bool(t: torch.Tensor, name: str, shape: str) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.bool:
        got = f"{t.dtype} tensor" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a boolean {shape} tensor; got a {got}")


def awd_attention_mask(
    field_mask: torch.Tensor | None,
    dropped: torch.Tensor | None,
    num_prefix_tokens: int,
    num_patches: int | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """The attention mask of an AWD(+DIP) model, boolean ``[B, 1, T, T]`` (True = may attend).

    Rows are queries, columns keys, tokens ordered prefix first (``T = P + N``):

    - patch ``p`` attends to the patches of row ``p`` of ``field_mask`` and to itself, minus
      the patches in ``dropped`` (except itself), plus every prefix token;
    - prefix tokens attend to every token except the patches in ``dropped``.

    Args:
        field_mask: boolean ``[B, N, N]`` (or ``[N, N]`` for the whole batch); row ``p`` holds the
            patches ``p`` may attend to, e.g. ``responsive_field(windows, D).mask()`` or
            ``windows.mask()``. ``None`` means every patch (global attention).
        dropped: boolean ``[B, N]`` (or ``[N]``), the set ``D`` of DIP; ``None`` for none.
        num_prefix_tokens: ``P``.
        num_patches: ``N``, checked against the masks; needed when both masks are ``None``.
        batch_size: ``B``, checked against the masks; masks without a batch dimension are expanded.

    >>> m = awd_attention_mask(torch.tensor([[True, False], [False, True]]), None, 1)
    >>> m.shape, m[0, 0].int().tolist()
    (torch.Size([1, 1, 3, 3]), [[1, 1, 1], [1, 1, 0], [1, 0, 1]])
    >>> awd_attention_mask(None, torch.tensor([False, True]), 1)[0, 0].int().tolist()
    [[1, 1, 0], [1, 1, 0], [1, 1, 1]]
    """
    ref = field_mask if field_mask is not None else dropped
    if ref is None:
        if num_patches is None:
            raise ValueError("awd_attention_mask needs field_mask, dropped or num_patches")
        ref = torch.ones(num_patches, dtype=torch.bool)
    n = num_patches if num_patches is not None else ref.shape[-1]
    if field_mask is not None:
        _check_bool(field_mask, "field_mask", "[B, N, N]")
        if field_mask.dim() not in (2, 3) or field_mask.shape[-2:] != (n, n):
            raise ValueError(
                f"field_mask must have shape [B, {n}, {n}] for a model with {n} patches; got "
                f"{tuple(field_mask.shape)}. Build it with responsive_field(windows, D).mask() or windows.mask()."
            )
    if dropped is not None:
        _check_bool(dropped, "dropped", "[B, N]")
        if dropped.dim() not in (1, 2) or dropped.shape[-1] != n:
            raise ValueError(
                f"dropped must have shape [B, {n}] for a model with {n} patches; got {tuple(dropped.shape)}"
            )
    batches = {t.shape[0] for t, d in ((field_mask, 3), (dropped, 2)) if t is not None and t.dim() == d}
    if batch_size is not None:
        batches.add(batch_size)
    if len(batches) > 1:
        raise ValueError(f"field_mask, dropped and the images disagree on the batch size: {sorted(batches)}")
    b = batches.pop() if batches else 1
    device = ref.device
    eye = torch.eye(n, dtype=torch.bool, device=device)
    patch = field_mask if field_mask is not None else torch.ones(n, n, dtype=torch.bool, device=device)
    patch = patch.expand(b, n, n)
    keys = torch.ones(b, 1, n, dtype=torch.bool, device=device)
    if dropped is not None:
        keys = ~dropped.expand(b, n)[:, None, :]
        patch = patch & keys
    patch = patch | eye
    p = int(num_prefix_tokens)
    top = torch.cat([torch.ones(b, p, p, dtype=torch.bool, device=device), keys.expand(b, p, n)], dim=2)
    bottom = torch.cat([torch.ones(b, n, p, dtype=torch.bool, device=device), patch], dim=2)
    return torch.cat([top, bottom], dim=1)[:, None]


_UNSET: Any = object()


def _keep_tokens(dropped: torch.Tensor, batch: int, prefix: int, patches: int) -> torch.Tensor:
    """``[B, T, 1]`` boolean: False for the patch tokens in ``D`` (prefix tokens are always kept)."""
    keep = torch.cat([dropped.new_ones(batch, prefix), ~dropped.expand(batch, patches)], dim=1)
    return keep[..., None]


class AWDViT:
    """Mixin swapped into a timm ``VisionTransformer``'s class by :func:`apply_awd`."""

    # without field_mask the forward is global attention, which the AWD-ViT never runs: capture
    # (patchfield.capture_attention) asks for it explicitly
    patchfield_required_kwargs = ("field_mask",)

    def forward_features(
        self, x: torch.Tensor, field_mask: torch.Tensor | None = None, dropped: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embeddings, blocks attending within ``field_mask``, final norm: ``[B, T, C]``.

        Honours ``set_grad_checkpointing``; :meth:`forward_intermediates` applies the same mask.
        """
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        ckpt = self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting()
        if field_mask is None and dropped is None:
            for blk in self.blocks:
                x = checkpoint(blk, x, use_reentrant=False) if ckpt else blk(x)
            return self.norm(x)
        p = self.num_prefix_tokens
        mask = awd_attention_mask(field_mask, dropped, p, x.shape[1] - p, x.shape[0])
        keep = None
        if dropped is not None:
            # patch tokens in D are multiplied by 0 at the input of every block; prefix tokens never
            keep = _keep_tokens(dropped, x.shape[0], p, x.shape[1] - p).to(x.dtype)
        for blk in self.blocks:
            if keep is not None:
                x = x * keep
            x = checkpoint(blk, x, mask, use_reentrant=False) if ckpt else blk(x, attn_mask=mask)
        return self.norm(x)

    def forward(
        self, x: torch.Tensor, field_mask: torch.Tensor | None = None, dropped: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits of the images ``x`` ``[B, C, H, W]`` under their responsive fields.

        Args:
            x: images.
            field_mask: boolean ``[B, N, N]``, row ``p`` = the patches ``p`` may attend to (its window,
                minus ``D`` with DIP); ``None`` = global attention, identical to the plain ViT.
            dropped: boolean ``[B, N]``, the patches in ``D`` (zeroed at every block's input and
                excluded as keys), or ``None``.
        """
        return self.forward_head(self.forward_features(x, field_mask=field_mask, dropped=dropped))

    def forward_intermediates(
        self, x: torch.Tensor, *args: Any, field_mask: Any = _UNSET, dropped: torch.Tensor | None = None, **kwargs: Any
    ):
        """timm's ``forward_intermediates`` under the image's field (same arguments, plus the two below).

        Args:
            field_mask: as in :meth:`forward`; required (``None`` for global attention), so that the
                intermediates are never silently those of the unpatched ViT.
            dropped: as in :meth:`forward` (zeroed at every block's input and excluded as keys).

        Raises:
            ValueError: ``field_mask`` missing, or an ``attn_mask``/``is_causal`` given.
        """
        if field_mask is _UNSET:
            raise ValueError(
                "an AWD-ViT's forward_intermediates needs field_mask= (its windows, e.g. "
                "responsive_field(windows, D).mask(); None for global attention) and dropped= with DIP"
            )
        if kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
            raise ValueError("an AWD-ViT takes no attn_mask or is_causal: it masks by field_mask and dropped")
        if field_mask is None and dropped is None:
            return super().forward_intermediates(x, *args, **kwargs)
        b, p = x.shape[0], self.num_prefix_tokens
        n = model_grid(self, (int(x.shape[-2]), int(x.shape[-1]))).n
        kwargs["attn_mask"] = awd_attention_mask(field_mask, dropped, p, n, b)
        handles = []
        if dropped is not None:
            keep = _keep_tokens(dropped, b, p, n)

            def zero_dropped(_module, inputs):
                return (inputs[0] * keep.to(inputs[0].dtype), *inputs[1:])

            handles = [blk.register_forward_pre_hook(zero_dropped) for blk in self.blocks]
        try:
            return super().forward_intermediates(x, *args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()


def apply_awd(model: nn.Module) -> nn.Module:
    """Patch a timm ``VisionTransformer`` into an AWD-ViT, in place (weights and keys unchanged).

    Afterwards ``model(x, field_mask=None, dropped=None)``: see :meth:`AWDViT.forward`.
    Every layer and head gets the same mask (docs/spec.md §7): patches attend inside their field plus
    the prefix tokens; prefix tokens attend to every token outside ``D``. No parameters are added.

    Returns:
        The same ``model`` object. An already patched model is first restored (:func:`remove_patch`).

    Raises:
        TypeError: ``model`` is not a timm ``VisionTransformer``.
    """
    remove_patch(model)
    check_vit(model, "apply_awd")
    swap_class(model, AWDViT, "awd")
    return model
