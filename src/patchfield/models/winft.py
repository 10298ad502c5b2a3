"""WinfT: window-free multi-head attention that predicts its own windows (paper Eq. 8, 9, docs/spec.md §8).

Per layer, from the layer's own queries and keys (no parameters are added):

- ``s = mean over heads of Q Kᵀ`` (raw, unscaled dot products), ``[B, T, T]``;
- ``w' = sigmoid(s)`` and ``W[i, j] = 1`` iff ``w'[i, j] > mean_j w'[i, :]`` (the row mean over
  all ``T`` keys is the dynamic threshold);
- ``W`` is applied to the patch block only; rows and columns of prefix tokens stay 1.

Two modes:

- ``"paper"`` (default): ``A' = softmax((Q Kᵀ / √d) ⊙ W)``. Masked logits become 0, not −∞, so
  masked patches still receive weight ``exp(0)`` and still inform the query. This is the
  paper's formula (Eq. 9) and the mode that reproduces its accuracy claims (Tables 3, 4).
- ``"restrict"``: masked logits become −∞ (the patch itself always kept), so a query really
  interacts only with its ``W = 1`` keys. This is the mode in which the interactions counted in
  ``E_O`` (Table 3's WinfT column) are the only ones that happen.

Both modes predict ``W`` and count ``E_O`` the same way; they differ only in what ``W = 0`` does.

``E_O`` of a forward (``model(x, return_interactions=True)[-1]``, ``[B]``) is, per image, the mean
over layers of the number of ones of ``W`` on the patch block (in restrict mode ``W`` with its
diagonal forced on, i.e. the mask actually used), counted by
:func:`patchfield.interactions.count_interactions`.

Every per-layer quantity leaves the blocks as a return value (no state is written during the
forward), so the model works under ``torch.compile``, ``DataParallel`` and gradient
checkpointing, and pickles with ``torch.save(model)``. ``forward_intermediates`` runs the
WinfT attention too (every block's attention is patched).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import UnsupportedModelError
from ..interactions import count_interactions
from ._patch import check_vit, remove_patch, swap_class

__all__ = ["apply_winft", "window_mask", "head_mean", "WinfTAttention", "WinfTBlock", "WinfTViT", "MODES"]

MODES = ("paper", "restrict")


def head_mean(scores: torch.Tensor) -> torch.Tensor:
    """Mean over heads of ``scores`` ``[B, h, T, S]`` → ``[B, T, S]``.

    Written as one small matrix product with a ``1/h`` vector, which measured faster on CPU than
    ``scores.mean(1)`` (a strided reduction over the head dimension).
    """
    b, h, t, s = scores.shape
    weights = scores.new_full((1, 1, h), 1.0 / h)
    return torch.matmul(weights, scores.reshape(b, h, t * s)).reshape(b, t, s)


def window_mask(s: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """WinfT's window ``W`` on the patch block, boolean ``[B, N, N]``, from the logits ``s`` ``[B, T, T]``.

    ``w' = sigmoid(s)``; ``W[i, j] = w'[i, j] > mean_j w'[i, :]`` with the mean over all ``T`` keys
    of row ``i``, then rows and columns of prefix tokens are dropped.

    >>> s = torch.tensor([[[0., 0., 0.], [0., 2., -2.], [0., -1., 3.]]])
    >>> window_mask(s, 1).int().tolist()
    [[[1, 0], [0, 1]]]
    """
    w = torch.sigmoid(s.float())
    above = w > w.mean(dim=-1, keepdim=True)
    p = int(num_prefix_tokens)
    return above[:, p:, p:]


class WinfTAttention:
    """Mixin swapped into each block's timm ``Attention`` by :func:`apply_winft`.

    Honours ``fused_attn`` like timm. With it off, the softmax goes through ``self.attn_drop``
    (where :func:`patchfield.capture_attention` reads it). With it on, the fused
    ``scaled_dot_product_attention`` kernel computes the weighted values: in restrict mode with
    the window as a 0/−∞ mask (and ``s`` from one all-heads matrix product), in paper mode at
    inference with the bias ``−logits`` where ``W = 0`` (masked logits are then 0 up to rounding,
    ~1e-7 in float32). Paper mode with gradients always runs the explicit path, whose masked
    logits are exact zeros with exact gradients.
    """

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        return_windows: bool = False,
    ):
        """The attention's output ``[B, T, C]`` (what timm's ``Block`` calls).

        With ``return_windows``: ``(output, s on the patch block float [B, N, N], W as applied bool [B, N, N])``.
        """
        if attn_mask is not None or is_causal:
            raise ValueError("WinfT attention builds its own window mask; it takes no attn_mask or is_causal")
        b, t, _ = x.shape
        gate_layer = getattr(self, "gate", None)
        gate = gate_layer(x).sigmoid() if gate_layer is not None else None
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)

        p = self.winft_num_prefix_tokens
        restrict = self.winft_mode == "restrict"
        fused = restrict and self.fused_attn
        if fused:
            # mean_h q_h·k_h = (q_1..q_h)·(k_1..k_h) / h: one matmul over all heads at once; the
            # per-head logits are left to the fused kernel
            raw = None
            qc, kc = q.transpose(1, 2).reshape(b, t, -1), k.transpose(1, 2).reshape(b, t, -1)
            s = (qc @ kc.transpose(-2, -1)).float() / self.num_heads
        else:
            raw = q @ k.transpose(-2, -1)  # [B, h, T, T], unscaled
            s = head_mean(raw).float()  # [B, T, T]
        w = window_mask(s, p)
        if restrict:
            w = w | torch.eye(t - p, dtype=torch.bool, device=w.device)
        full = F.pad(w, (p, 0, p, 0), value=True)[:, None]  # [B, 1, T, T]

        if restrict:
            bias = torch.zeros(full.shape, dtype=q.dtype, device=q.device).masked_fill_(~full, float("-inf"))
            if fused:
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.0
                )
            else:
                attn = torch.add(bias, raw, alpha=self.scale).softmax(dim=-1)
                out = self.attn_drop(attn) @ v
        elif self.fused_attn and not raw.requires_grad:
            # inference: logits·W as SDPA's logits plus the bias −logits where W = 0 (0 up to rounding)
            bias = raw.mul_((full.to(raw.dtype) - 1) * self.scale)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.0
            )
        else:
            factor = (full * self.scale).to(raw.dtype)  # masked logits become 0, not -inf
            logits = raw * factor if raw.requires_grad else raw.mul_(factor)
            out = self.attn_drop(logits.softmax(dim=-1)) @ v

        out = out.transpose(1, 2).reshape(b, t, self.attn_dim)
        out = self.norm(out)
        if gate is not None:
            out = out * gate
        out = self.proj_drop(self.proj(out))
        return (out, s[:, p:, p:], w) if return_windows else out


class WinfTBlock:
    """Mixin swapped into each timm ``Block`` by :func:`apply_winft`: with ``return_windows`` its forward also
    returns the attention's ``s`` and ``W``, so a WinfT forward calls its blocks as modules and their forward
    hooks run (:func:`patchfield.capture.block_output_norms`, a user's hooks), as in a ViT."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, return_windows: bool = False):
        """The block's output tokens ``[B, T, C]``; with ``return_windows`` ``(tokens, s [B, N, N], W [B, N, N])``
        (timm ``Block.forward`` with the WinfT attention's ``s`` and ``W`` returned beside the tokens)."""
        if not return_windows:
            return super().forward(x, attn_mask=attn_mask)
        if attn_mask is not None:
            raise ValueError("WinfT attention builds its own window mask; it takes no attn_mask")
        out, s, w = self.attn(self.norm1(x), return_windows=True)
        x = x + self.drop_path1(self.ls1(out))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x, s, w


class WinfTViT:
    """Mixin swapped into a timm ``VisionTransformer``'s class by :func:`apply_winft`."""

    def forward_features(
        self,
        x: torch.Tensor,
        return_window_logits: bool = False,
        return_windows: bool = False,
        return_interactions: bool = False,
    ):
        """Embeddings, WinfT blocks, final norm: ``[B, T, C]``, followed by the extras asked for.

        Honours ``set_grad_checkpointing`` (the window logits come out of the recomputed blocks as
        outputs, so ``L_BCE``'s gradients flow through them).
        """
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        ckpt = self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting()
        logits, windows, counts = [], [], []  # per layer, only what was asked for
        for blk in self.blocks:
            if ckpt:
                x, s, w = checkpoint(blk, x, None, True, use_reentrant=False)
            else:
                x, s, w = blk(x, return_windows=True)
            if return_window_logits:
                logits.append(s)
            if return_windows:
                windows.append(w)
            if return_interactions:
                counts.append(count_interactions(w))
        x = self.norm(x)
        extras = []
        if return_window_logits:
            extras.append(torch.stack(logits, dim=1))
        if return_windows:
            extras.append(torch.stack(windows, dim=1))
        if return_interactions:
            extras.append(torch.stack(counts, dim=1).to(torch.float32).mean(dim=1))  # [B, L] -> [B]
        return (x, *extras) if extras else x

    def forward(
        self,
        x: torch.Tensor,
        return_window_logits: bool = False,
        return_windows: bool = False,
        return_interactions: bool = False,
    ):
        """Logits of the images ``x`` ``[B, C, H, W]``, followed by the extras asked for, in this order.

        Args:
            x: images.
            return_window_logits: also return every layer's window logits ``s`` on the patch block,
                float ``[B, L, N, N]`` (unscaled; ``sigmoid(s)`` is ``w'``), for ``L_BCE``
                (:func:`patchfield.models.window_bce_loss`).
            return_windows: also return every layer's window ``W`` on the patch block, boolean
                ``[B, L, N, N]``, exactly as applied (restrict mode: diagonal on). It cannot be rebuilt
                from the window logits alone: the threshold's row mean includes the prefix columns.
                Summed over layers it is the paper's Fig. 13.
            return_interactions: also return the forward's ``E_O`` summands per image, float ``[B]``:
                the mean over layers of the ones of ``W`` (docs/spec.md §8).

        Returns:
            ``logits``, or a tuple ``(logits, window_logits?, windows?, interactions?)`` holding the
            extras asked for.
        """
        out = self.forward_features(
            x, return_window_logits=return_window_logits, return_windows=return_windows,
            return_interactions=return_interactions,
        )
        if isinstance(out, tuple):
            return (self.forward_head(out[0]), *out[1:])
        return self.forward_head(out)


def apply_winft(model: nn.Module, mode: str = "paper") -> nn.Module:
    """Patch a timm ``VisionTransformer`` into a WinfT, in place (weights and keys unchanged).

    Args:
        model: a timm ``VisionTransformer`` whose blocks use timm's ``Attention``.
        mode: ``"paper"`` (``softmax((QKᵀ/√d) ⊙ W)``, the paper's Eq. 9) or ``"restrict"`` (masked
            logits at −∞, the patch itself kept). See the module docstring for which claim each
            mode reproduces.

    Returns:
        The same ``model``; afterwards ``model(x)`` → logits, ``model(x, return_window_logits=True)``
        → ``(logits, window_logits [B, L, N, N])``, ``model(x, return_interactions=True)`` →
        ``(logits, interactions [B])`` (see :meth:`WinfTViT.forward`).

    Raises:
        ValueError: unknown ``mode``.
        TypeError: not a timm ``VisionTransformer``, or a block that is not timm's ``Block`` with timm's
            ``Attention``.
    """
    if mode not in MODES:
        raise ValueError(f"WinfT mode must be one of {MODES}; got {mode!r}")
    from timm.layers import Attention
    from timm.models.vision_transformer import Block

    remove_patch(model)
    check_vit(model, "apply_winft")
    for i, blk in enumerate(model.blocks):
        if type(blk) is not Block:
            raise UnsupportedModelError(
                f"block {i} of {type(model).__name__} is a {type(blk).__name__}; WinfT supports timm's Block only"
            )
        if not isinstance(getattr(blk, "attn", None), Attention):
            raise UnsupportedModelError(
                f"block {i} of {type(model).__name__} has attention {type(getattr(blk, 'attn', None)).__name__}; "
                "WinfT supports timm's Attention (qkv projection, q_norm/k_norm) only"
            )
    for blk in model.blocks:
        swap_class(blk, WinfTBlock, "winft")
        swap_class(blk.attn, WinfTAttention, "winft")
        blk.attn.winft_mode = mode
        blk.attn.winft_num_prefix_tokens = int(model.num_prefix_tokens)
    model.winft_mode = mode
    swap_class(model, WinfTViT, "winft")
    return model
