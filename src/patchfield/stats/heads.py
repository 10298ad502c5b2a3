"""Per-head attention statistics: mean attention distance, attention entropy, class-token attention.

Both per-head statistics use the patch block of the attention with its rows renormalised over
the patch keys (each query's attention to the patches, rescaled to sum to 1; the prefix tokens'
share is left out). A row whose patch block sums to 0 gives distance 0 and entropy 0.

- Mean attention distance (Dosovitskiy et al., ICLR 2021, Fig. 7 and 11): for query patch ``p``,
  ``Σ_i ã[p, i] · ‖c_p − c_i‖`` with ``c`` the patch centres in pixels of the model input,
  averaged over the query patches.
- Attention entropy: ``−Σ_i ã[p, i] · ln ã[p, i]`` in nats, averaged over the query patches:
  0 for a head that attends to one patch, ``ln N`` for one that attends uniformly to all ``N``.
"""

from __future__ import annotations

import torch

from ..grid import Grid

__all__ = [
    "attention_entropy",
    "class_token_attention",
    "head_reductions",
    "mean_attention_distance",
    "patch_distances",
    "renormalized_patch_rows",
]


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[float, float]:
    if isinstance(size, (int, float)):
        ph = pw = float(size)
    else:
        ph, pw = (float(s) for s in size)
    if ph <= 0 or pw <= 0:
        raise ValueError(f"patch_size must be positive, got {size!r}")
    return ph, pw


def patch_distances(
    grid: Grid | tuple[int, int], patch_size: int | tuple[int, int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Euclidean distances between patch centres in pixels, ``[N, N]``.

    ``patch_size`` is ``(ph, pw)`` (or one int): patch ``p`` is centred at
    ``((x_p + ½)·pw, (y_p + ½)·ph)``; non-square patches and grids are fine.

    >>> patch_distances((1, 2), (16, 16)).tolist()
    [[0.0, 16.0], [16.0, 0.0]]
    """
    g = Grid.coerce(grid)
    ph, pw = _pair(patch_size)
    x, y = g.coords()
    dx = (x[:, None] - x[None, :]).to(torch.float64) * pw
    dy = (y[:, None] - y[None, :]).to(torch.float64) * ph
    return torch.hypot(dx, dy).to(dtype)


def renormalized_patch_rows(block: torch.Tensor) -> torch.Tensor:
    """Rows of a patch block ``[..., N, N]`` rescaled to sum to 1 (all-zero rows stay 0), float32 or float64."""
    a = block.to(torch.promote_types(block.dtype, torch.float32))
    return a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)


def _check_block(block: torch.Tensor, n: int | None = None) -> None:
    if not isinstance(block, torch.Tensor) or block.dim() < 2 or block.shape[-1] != block.shape[-2]:
        raise ValueError(f"attention must be a patch block [..., N, N]; got {getattr(block, 'shape', block)}")
    if n is not None and block.shape[-1] != n:
        raise ValueError(f"attention has {block.shape[-1]} patches but the grid has {n}")


def mean_attention_distance(
    block: torch.Tensor, grid: Grid | tuple[int, int], patch_size: int | tuple[int, int],
    distances: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean attention distance in pixels of the patch block ``[..., N, N]`` → ``[...]`` (e.g. ``[B, k]``).

    Args:
        block: attention among the patches (rows: queries), e.g. ``attn[..., P:, P:]``.
        grid: the patch grid; patch_size: ``(ph, pw)`` in pixels of the model input.
        distances: :func:`patch_distances` precomputed for the grid (optional, saves work per layer).

    A head that attends only to itself gives 0; uniform attention on a ``1 × w`` row of
    ``s``-pixel patches gives ``s·(w² − 1)/(3w)``.

    >>> round(mean_attention_distance(torch.full((2, 2), 0.5), (1, 2), 16).item(), 6)
    8.0
    """
    return head_reductions(block, grid, patch_size, distances)[0]


def attention_entropy(block: torch.Tensor) -> torch.Tensor:
    """Mean attention entropy in nats of the patch block ``[..., N, N]`` → ``[...]``.

    >>> round(attention_entropy(torch.full((4, 4), 0.25)).item(), 6) == round(float(torch.log(torch.tensor(4.))), 6)
    True
    """
    _check_block(block)
    return _entropy(renormalized_patch_rows(block))


def _entropy(rows: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(rows, rows).sum(-1).mean(-1)


def head_reductions(
    block: torch.Tensor, grid: Grid | tuple[int, int], patch_size: int | tuple[int, int],
    distances: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean distance, entropy)`` of a patch block ``[..., N, N]``, rows renormalised once for both."""
    g = Grid.coerce(grid)
    _check_block(block, g.n)
    a = renormalized_patch_rows(block)
    d = patch_distances(g, patch_size, a.dtype) if distances is None else distances.to(a.dtype)
    return (a * d.to(a.device)).sum(-1).mean(-1), _entropy(a)


def class_token_attention(attn: torch.Tensor, num_prefix_tokens: int, cls_index: int = 0
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The class token's attention to the patches, mean over heads.

    Args:
        attn: one layer's attention ``[..., k, T, T]`` (softmax over all tokens, not renormalised).
        num_prefix_tokens: ``P``; the patches are tokens ``P:``.
        cls_index: the class token's position among the prefix tokens.

    Returns:
        ``(mass [...], map [..., N])``: the share of the class token's attention that goes to
        patches, and its attention to each patch.
    """
    if not 0 <= cls_index < num_prefix_tokens:
        raise ValueError(f"no class token at index {cls_index} among {num_prefix_tokens} prefix tokens")
    row = attn[..., cls_index, num_prefix_tokens:].to(torch.promote_types(attn.dtype, torch.float32)).mean(-2)
    return row.sum(-1), row
