"""The uncertainty map ``U`` of patch interactions (paper Eq. 2 and 3, docs/spec.md §2).

Precision (docs/spec.md §2: ``‖U − U_ref‖ / ‖U_ref‖ ≤ 1e-5`` against float64 on the same inputs). The
two-pass :func:`interaction_uncertainty` computes in float32 at least. The streaming
:class:`UncertaintyAccumulator` keeps three float32 ``[..., k, N, N]`` tensors (float64 for
float64 inputs) and meets the bound without float64 storage:

- **Shift by the first layer.** Every layer enters as its deviation ``d = A_l − A_0`` from the
  first layer's map, which is kept exactly. When ``A_l`` and ``A_0`` are within a factor 2 of
  each other (the hard case: near-uniform maps that change little across layers) the float32
  subtraction is exact (Sterbenz's lemma); otherwise its rounding is at most half an ulp of ``d``
  itself. bf16 and fp16 inputs have so few mantissa bits that ``d`` and ``d²`` are exact.
- **Welford's update on the deviations** (mean ``m`` and sum of squared deviations ``M2``, in
  the form ``M2 += (n−1)/n · e²`` with ``e = d − m``). The mean ``A_0 + m`` carries the large
  part in ``A_0`` and the small part in ``m``, so ``e`` is not swamped by the rounding of a mean
  near ``1/N`` (plain float32 Welford on ``A`` loses about 3 digits there, the reason float64
  was used before). Welford's relative error grows like ``L·κ·ε`` (``ε = 2⁻²⁴``, ``κ`` the
  condition number of the deviations), and the shift bounds ``κ ≤ √(L+1)``: ``(A_0 − mean)²`` is
  one term of ``L·𝒰``.
- ``U``, the variance of ``𝒰`` across heads, is computed in float64 one image at a time.

Measured (tests/test_quantities.py, near-uniform 64-patch maps, 12 and 24 layers, float32, bf16
and fp16 inputs, also with an outlying first layer): relative error of ``U`` ≤ 4e-7, 25x inside
the bound; a float32 sum of shifted squares reached 8.5e-6 there. What no float32 storage can
fix: when every head has nearly the same ``𝒰``, ``U`` is a small difference of rounded values;
the two-pass float32 function shares that limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["interaction_uncertainty", "LayerStatistics", "UncertaintyAccumulator", "check_attention"]


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


#: Elements of the update's scratch tensor: whole layers at 224 px (batch 16, 12 heads: 7.4M), four
#: chunks at 384 px. Bigger chunks waste memory; many small ones cost per-call overhead on shared CPUs.
_UPDATE_CHUNK = 1 << 24


@dataclass
class LayerStatistics:
    """What :meth:`UncertaintyAccumulator.finish` returns.

    Attributes:
        mean: ``E_A``, the mean across layers, ``[..., k, N, N]``.
        layer_variance: ``𝒰``, the population variance across layers, ``[..., k, N, N]``.
        U: the population variance of ``𝒰`` across heads, ``[..., N, N]``.
    """

    mean: torch.Tensor
    layer_variance: torch.Tensor
    U: torch.Tensor


class UncertaintyAccumulator:
    """Streaming form of :func:`interaction_uncertainty`: one layer at a time.

    Keeps the first layer's map and Welford's mean and sum of squared deviations of the later
    layers from it: three ``[..., k, N, N]`` tensors in float32 (float64 for float64 inputs), plus
    a scratch of at most 2²⁴ elements for the update, whatever the number of layers. ``U`` meets docs/spec.md §2's
    bound in float32, bf16 and fp16 (see the module docstring for how). Results are float32
    (float64 for float64 inputs), as :func:`interaction_uncertainty`.

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
        self._shift: torch.Tensor | None = None  # A_0
        self._mean: torch.Tensor | None = None  # mean of A_l - A_0
        self._m2: torch.Tensor | None = None  # sum of squared deviations from the mean
        self._step: torch.Tensor | None = None  # scratch for the update
        self._finished = False

    def update(self, layer_attn: torch.Tensor) -> None:
        """Add one layer's patch block ``[..., k, N, N]``."""
        if self._finished:
            raise ValueError("the accumulator was finished; start a new one")
        a = layer_attn.detach()
        work = torch.promote_types(a.dtype, torch.float32)
        if self.renormalize:
            a = a.to(work)
            a = a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(work).tiny)
        if self._shift is None:
            # normal tensors even inside inference mode, so finish() can reuse them in place outside it
            with torch.inference_mode(False):
                self.count = 1
                self._shift = a.to(work, memory_format=torch.contiguous_format, copy=True)
                self._mean = torch.zeros_like(self._shift)
                self._m2 = torch.zeros_like(self._shift)
            return
        if a.shape != self._shift.shape:
            raise ValueError(f"layer attention shape {tuple(a.shape)} differs from {tuple(self._shift.shape)}")
        n1, n2 = a.shape[-2:]
        rows = self._shift.view(-1, n1, n2)
        step = max(1, _UPDATE_CHUNK // (n1 * n2))  # matrices per chunk: the scratch stays small
        if self._step is None:
            with torch.inference_mode(False):
                self._step = torch.empty((min(step, rows.shape[0]), n1, n2), dtype=rows.dtype, device=rows.device)
        self.count += 1
        n = self.count
        a = a.reshape(-1, n1, n2)
        mean, m2 = self._mean.view(-1, n1, n2), self._m2.view(-1, n1, n2)
        for i in range(0, rows.shape[0], step):
            j = min(i + step, rows.shape[0])
            e = torch.sub(a[i:j], rows[i:j], out=self._step[: j - i])  # exact near A_0 (module docstring)
            e.sub_(mean[i:j])
            m2[i:j].addcmul_(e, e, value=(n - 1) / n)
            mean[i:j].add_(e, alpha=1.0 / n)

    def _check(self) -> None:
        if self._finished:
            raise ValueError("the accumulator was finished; read the statistics finish() returned")
        if self._m2 is None:
            raise ValueError("no layer was added to the accumulator")

    @property
    def mean(self) -> torch.Tensor | None:
        """``E_A``: the mean across the layers seen, ``[..., k, N, N]`` (``None`` before the first layer)."""
        if self._shift is None or self._finished:
            return None
        return self._shift + self._mean

    def layer_variance(self) -> torch.Tensor:
        """``𝒰``: the population variance across the layers seen, ``[..., k, N, N]``."""
        self._check()
        return self._m2 / self.count

    def result(self) -> torch.Tensor:
        """``U``: the population variance of ``𝒰`` across heads, ``[..., N, N]``."""
        self._check()
        return _head_variance(self._m2, self.count)

    def finish(self) -> LayerStatistics:
        """``E_A``, ``𝒰`` and ``U`` at once, made in the accumulator's own memory (no copies).

        The accumulator cannot be updated or read after this.
        """
        self._check()
        self._step = None
        mean = self._shift.add_(self._mean)
        self._mean = None
        U = _head_variance(self._m2, self.count)
        stats = LayerStatistics(mean=mean, layer_variance=self._m2.div_(self.count), U=U)
        self._shift = self._m2 = None
        self._finished = True
        return stats


def _head_variance(m2: torch.Tensor, count: int) -> torch.Tensor:
    """Population variance across heads (dim -3) of ``m2 / count``, in float64 one image at a time."""
    heads, n1, n2 = m2.shape[-3:]
    flat = m2.reshape(-1, heads, n1, n2)
    out = torch.empty((flat.shape[0], n1, n2), dtype=m2.dtype, device=m2.device)
    for i in range(flat.shape[0]):
        out[i] = (flat[i].double() / count).var(dim=0, correction=0)
    return out.reshape(m2.shape[:-3] + (n1, n2))
