"""One call from images to every quantity of the paper: ``U``, windows, ``D``, responsive fields."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .capture import capture_uncertainty
from .checks import check_rates
from .dip import column_variance, indiscriminative_patches
from .field import ResponsiveField, responsive_field
from .grid import Grid
from .windows import Windows, adaptive_windows

__all__ = ["Analysis", "analyze", "analyze_map"]


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

    @property
    def batch_size(self) -> int:
        return self.U.shape[0]

    def interactions(self) -> torch.Tensor:
        """Per image: ``Σ_p |S_p|`` with DIP, ``O`` of the windows without it (SPEC §3, §5), ``[B]``."""
        return self.field.interactions() if bool(self.dropped.any()) else self.windows.interactions()

    def expected_interactions(self) -> float:
        """``E_O``: the mean of :meth:`interactions` over the batch."""
        return float(self.interactions().float().mean())

    def to_json(self, index: int) -> dict[str, Any]:
        """The ``fields.json`` record of image ``index`` (schema in README.md)."""
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
        if self.logits is not None and self.logits.dim() == 2 and bool(torch.isfinite(self.logits[index]).all()):
            record["predicted_class"] = int(self.logits[index].argmax())
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
) -> Analysis:
    """Capture attention (streaming) and compute every quantity of the paper for a batch.

    Args:
        model: a timm ViT-family model or a Hugging Face ViT, in eval mode.
        images: ``[B, C, H, W]`` normalised images.
        alpha: share of ``U``'s entries that shape the windows, ``(0, 1]``.
        beta: share of patches dropped as indiscriminative, ``[0, 1)``.
        layers: layers to use (all by default).
        renormalize: rescale patch-block rows to sum to 1 before the statistics.
    """
    check_rates(alpha, beta)
    cap = capture_uncertainty(model, images, layers, renormalize=renormalize)
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
    )
