"""One call from images to every quantity of the paper: ``U``, windows, ``D``, responsive fields."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .capture import capture_uncertainty
from .checks import check_rates
from .dip import column_variance, indiscriminative_patches
from .field import ResponsiveField, responsive_field
from .grid import Grid
from .interactions import expected_interactions
from .introspect import is_classifier
from .windows import Windows, adaptive_windows

if TYPE_CHECKING:
    from .kinds import Kind

__all__ = ["Analysis", "analyze", "analyze_map", "awd_forward_kwargs"]


@dataclass
class Analysis:
    """Patch-interaction analysis of a batch of images.

    Attributes:
        U: uncertainty map ``[B, N, N]``.
        windows: adaptive windows at ``alpha``.
        dropped: the set ``D`` at ``beta``, boolean ``[B, N]``.
        field: responsive fields (windows minus ``D``).
        grid: patch grid; ``num_prefix_tokens``: ``P``.
        alpha, beta: the rates used.
        logits: the model's output, when the analysis ran a model.
        mean_attention: ``E_A`` on the patch block ``[B, k, N, N]``, when available.
        classifier: whether ``logits`` are class logits (a model with a classifier head), so that
            their argmax is a predicted class.
    """

    U: torch.Tensor
    windows: Windows
    dropped: torch.Tensor
    field: ResponsiveField
    grid: Grid
    alpha: float
    beta: float
    num_prefix_tokens: int = 0
    logits: torch.Tensor | None = None
    mean_attention: torch.Tensor | None = None
    classifier: bool = False

    @property
    def batch_size(self) -> int:
        return self.U.shape[0]

    def interactions(self) -> torch.Tensor:
        """Per image: ``Σ_p |S_p|`` with DIP, ``O`` of the windows without it (docs/spec.md §3, §5), ``[B]``."""
        return self.field.interactions() if bool(self.dropped.any()) else self.windows.interactions()

    def expected_interactions(self) -> float:
        """``E_O``: the mean of :meth:`interactions` over the batch."""
        return expected_interactions(self.interactions())

    def predicted_classes(self) -> torch.Tensor | None:
        """The argmax class per image ``[B]``, or ``None`` when the model has no classifier head."""
        if not self.classifier or self.logits is None or self.logits.dim() != 2:
            return None
        return self.logits.argmax(-1)

    def _repr_html_(self) -> str:
        """Jupyter: the settings, a per-image table and the U / windows / fields figure of image 0."""
        from .display import analysis_html

        return analysis_html(self)

    def to_json(self, index: int) -> dict[str, Any]:
        """The ``fields.json`` record of image ``index`` (schema in docs/formats.md)."""
        f = self.field
        record: dict[str, Any] = {
            "grid": [self.grid.height, self.grid.width],
            "num_patches": self.grid.n,
            "num_prefix_tokens": self.num_prefix_tokens,
            "alpha": self.alpha,
            "beta": self.beta,
            "interactions": int(self.interactions()[index]),
            "window_interactions": int(self.windows.interactions()[index]),
            "windows": self.windows.bounds()[index].tolist(),
            "dropped": torch.nonzero(self.dropped[index]).flatten().tolist(),
            "field_size": f.size[index].tolist(),
            "field_extent": f.extent[index].tolist(),
            "tendency": [[round(a, 6), round(b, 6)] for a, b in f.tendency[index].tolist()],
            "magnitude": [round(m, 6) for m in f.magnitude[index].tolist()],
            "column_variance": [float(v) for v in column_variance(self.U[index]).tolist()],
        }
        # no class from NaN/Inf logits; "degenerate": U constant (uniform attention, or U all zero), so the
        # windows and D are decided by tie-breaking alone
        predicted = self.predicted_classes()
        if predicted is not None and bool(torch.isfinite(self.logits[index]).all()):
            record["predicted_class"] = int(predicted[index])
        record["degenerate"] = bool(self.U[index].amax() == self.U[index].amin())
        return record


def analyze_map(
    U: torch.Tensor, grid: Grid | tuple[int, int], alpha: float = 0.1, beta: float = 0.0
) -> tuple[Windows, torch.Tensor, ResponsiveField]:
    """Windows, ``D`` and responsive fields from an uncertainty map ``[..., N, N]``."""
    g = Grid.coerce(grid)
    windows = adaptive_windows(U, alpha, g)
    dropped = indiscriminative_patches(U, beta)
    return windows, dropped, responsive_field(windows, dropped)


@torch.no_grad()
def analyze(
    model: nn.Module,
    images: torch.Tensor,
    alpha: float = 0.1,
    beta: float = 0.0,
    *,
    layers: Sequence[int] | None = None,
    renormalize: bool = False,
    forward_kwargs: dict[str, Any] | None = None,
    amp: bool = False,
) -> Analysis:
    """Capture attention (streaming) and compute every quantity of the paper for a batch.

    Args:
        model: a timm ViT-family model or a Hugging Face ViT, in eval mode.
        images: ``[B, C, H, W]`` normalised images.
        alpha: share of ``U``'s entries that shape the windows, ``(0, 1]``.
        beta: share of patches dropped as indiscriminative, ``[0, 1)``.
        layers: model layer indices to use (negative counts from the model's last layer); all by default.
        renormalize: rescale patch-block rows to sum to 1 before the statistics.
        forward_kwargs: keyword arguments of the model's forward (an AWD-ViT's ``field_mask``,
            ``dropped``); see :func:`patchfield.capture_attention`.
        amp: run the model's forward under bf16 autocast on the images' device (faster on GPUs);
            the attention statistics are still accumulated to docs/spec.md §2's precision, the windows and
            fields computed outside autocast.
    """
    check_rates(alpha, beta)
    autocast = torch.autocast(images.device.type, dtype=torch.bfloat16) if amp else nullcontext()
    with autocast:
        cap = capture_uncertainty(model, images, layers, renormalize=renormalize, forward_kwargs=forward_kwargs)
    windows, dropped, field = analyze_map(cap.U, cap.grid, alpha, beta)
    return Analysis(
        U=cap.U,
        windows=windows,
        dropped=dropped,
        field=field,
        grid=cap.grid,
        alpha=float(alpha),
        beta=float(beta),
        num_prefix_tokens=cap.num_prefix_tokens,
        logits=cap.logits,
        mean_attention=cap.mean_attention,
        classifier=is_classifier(model),
    )


def awd_forward_kwargs(
    baseline: nn.Module, images: torch.Tensor, alpha: float, beta: float = 0.0, kind: Kind | str = "awd-dip", *,
    amp: bool = False,
) -> dict[str, torch.Tensor | None]:
    """The forward arguments an AWD-ViT of ``kind`` gets for ``images``, computed from its baseline ViT.

    An AWD-ViT attends within fields it never computes itself: those of the ViT it was trained
    from, at the ``alpha``/``beta`` of its ground-truth store (docs/spec.md §6, §7). For images outside that
    store (a user's photos) they are computed here the way the store holds them: ``awd`` attends
    within the windows alone (``dropped`` ``None``), ``awd-dip`` (whose
    :attr:`~patchfield.kinds.Kind.dip_fields` and :attr:`~patchfield.kinds.Kind.drops_patches` are set) within
    the responsive fields ``S_p`` with ``D`` dropped. Pass the result as ``forward_kwargs`` to :func:`analyze` or
    :func:`patchfield.capture_attention`, or as ``model(images, **kwargs)``.

    Args:
        baseline: the ViT whose windows the AWD-ViT was trained with (a plain ViT, in eval mode).
        images: ``[B, C, H, W]`` normalised images, on the baseline's device.
        alpha, beta: the rates of the AWD-ViT's ground truth.
        kind: an AWD kind (:attr:`~patchfield.kinds.Kind.attends_fields`), or its name: the ``kind`` of its
            ``run.json``, ``awd`` or ``awd-dip``.
        amp: bf16 autocast for the baseline's forward (see :func:`analyze`).

    Returns:
        ``{"field_mask": bool [B, N, N], "dropped": bool [B, N] or None}``.

    Raises:
        ValueError: another ``kind``, or rates out of range.
    """
    from .kinds import KINDS, as_kind

    kind = as_kind(kind)
    if not kind.attends_fields:
        awd = " or ".join(repr(k.name) for k in KINDS if k.attends_fields)
        raise ValueError(f"kind must be {awd}, got {kind.name!r}")
    a = analyze(baseline, images, alpha, beta, amp=amp)
    return {"field_mask": (a.field if kind.dip_fields else a.windows).mask(),
            "dropped": a.dropped if kind.drops_patches else None}
