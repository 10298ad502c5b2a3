"""The uncertainty map ``U`` of patch interactions (paper Eq. 2 and 3, docs/spec.md §2)."""

from __future__ import annotations

import torch

__all__ = ["interaction_uncertainty", "UncertaintyAccumulator", "check_attention"]


def check_attention(attn: torch.Tensor, *, min_dims: int = 4, tol: float = 1e-3) -> None:
    """Raise ``ValueError`` unless ``attn`` is a stack of (sub-)stochastic attention matrices.

    Args:
        attn: ``[..., N, N]`` attention weights: non-negative, finite, rows summing to at most 1
            (the patch block of a softmax over all tokens sums to 1 minus the prefix share).
        min_dims: the least number of dimensions ``attn`` must have.
        tol: slack for rounding.
    """
    if not isinstance(attn, torch.Tensor):
        raise ValueError(f"attention must be a torch.Tensor, got {type(attn).__name__}")
    if attn.dim() < min_dims or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(
            f"attention must have shape [..., L, k, N, N] (at least {min_dims} dims, square last two); "
            f"got {tuple(attn.shape)}"
        )
    if not torch.isfinite(attn).all():
        raise ValueError("attention holds NaN or Inf values; check the model's dtype and inputs")
    if attn.numel() and (attn.amin() < -tol or attn.sum(-1).amax() > 1 + tol):
        raise ValueError(
            "attention rows are not probability distributions (negative weights or rows summing past 1); "
            "pass softmax outputs, not logits"
        )


def interaction_uncertainty(
    attn: torch.Tensor, *, renormalize: bool = False, validate: bool = True
) -> torch.Tensor:
    """Uncertainty map ``U`` of patch interactions (Eq. 2, 3).

    ``E_A`` is the mean over layers, ``𝒰`` the population variance across layers per head,
    and ``U`` the population variance of ``𝒰`` across heads.

    Args:
        attn: patch block of the attention, ``[..., L, k, N, N]``.
        renormalize: rescale each row of the patch block to sum to 1 first.
        validate: check shapes and values (see :func:`check_attention`).

    Returns:
        ``U`` of shape ``[..., N, N]``, float32 (float64 if ``attn`` is float64).

    Example: two layers, two heads, one patch. ``𝒰`` is ``[0.04, 0]`` (head 0 moves
    from 0.2 to 0.6, head 1 stays), so ``U`` is the variance of those two values.

    >>> a = torch.tensor([[[[0.2]], [[0.5]]], [[[0.6]], [[0.5]]]])  # [L=2, k=2, 1, 1]
    >>> round(interaction_uncertainty(a).item(), 8)
    0.0004
    """
    if validate:
        check_attention(attn)
    a = attn.to(torch.promote_types(attn.dtype, torch.float32))
    if renormalize:
        a = a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    per_head = a.var(dim=-4, correction=0)  # 𝒰: [..., k, N, N]
    return per_head.var(dim=-3, correction=0)


class UncertaintyAccumulator:
    """Streaming form of :func:`interaction_uncertainty`: one layer at a time.

    Welford's update keeps the mean and the sum of squared deviations across layers per head
    in float64 whatever the input dtype, so the memory is two float64 ``[..., k, N, N]`` tensors
    (not one per layer) and ``U`` meets docs/spec.md §2's bound (relative error ≤ 1e-5 against a float64
    computation on the same inputs) also when attention changes little across many layers.
    Results are float32 (float64 for float64 inputs), as :func:`interaction_uncertainty`.

    >>> a = torch.rand(2, 3, 4, 5, 5).softmax(-1) * 0.9  # [B, L, k, N, N]
    >>> acc = UncertaintyAccumulator()
    >>> for layer in range(3):
    ...     acc.update(a[:, layer])
    >>> torch.allclose(acc.result(), interaction_uncertainty(a), atol=1e-7)
    True
    """

    def __init__(self, *, renormalize: bool = False) -> None:
        self.renormalize = renormalize
        self.count = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._dtype = torch.float32

    def update(self, layer_attn: torch.Tensor) -> None:
        """Add one layer's patch block ``[..., k, N, N]``."""
        a = layer_attn.detach()
        dtype = torch.promote_types(a.dtype, torch.float32)
        a = a.to(torch.float64)
        if self.renormalize:
            a = a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
        if self._mean is None:
            self.count, self._dtype = 1, dtype
            self._mean = a.clone(memory_format=torch.contiguous_format)
            self._m2 = torch.zeros_like(self._mean)
            return
        if a.shape != self._mean.shape:
            raise ValueError(f"layer attention shape {tuple(a.shape)} differs from {tuple(self._mean.shape)}")
        self.count += 1
        delta = a - self._mean
        self._mean.add_(delta, alpha=1.0 / self.count)
        self._m2.addcmul_(delta, a - self._mean)

    def _check(self) -> None:
        if self._m2 is None:
            raise ValueError("no layer was added to the accumulator")

    @property
    def mean(self) -> torch.Tensor | None:
        """``E_A``: the mean across the layers seen, ``[..., k, N, N]`` (``None`` before the first layer)."""
        return None if self._mean is None else self._mean.to(self._dtype)

    def layer_variance(self) -> torch.Tensor:
        """``𝒰``: the population variance across the layers seen, ``[..., k, N, N]``."""
        self._check()
        return (self._m2 / self.count).to(self._dtype)

    def result(self) -> torch.Tensor:
        """``U``: the population variance of ``𝒰`` across heads, ``[..., N, N]``."""
        self._check()
        return (self._m2 / self.count).var(dim=-3, correction=0).to(self._dtype)
