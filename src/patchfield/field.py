"""Responsive fields: size and tendency (paper Eq. 6, 7, docs/spec.md §5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .windows import Windows

__all__ = ["ResponsiveField", "responsive_field"]


@dataclass
class ResponsiveField:
    """The responsive field ``S_p`` of every patch.

    Attributes:
        windows: the adaptive windows it was built from.
        dropped: boolean ``[..., N]``, the set ``D`` (all False without DIP).
        size: ``|S_p|``, long ``[..., N]``.
        extent: ``[..., N, 4]`` bounds of ``S_p`` itself (left, right, top, bottom).
        offset: ``R_p = (d_r − d_l, d_b − d_t)``, float ``[..., N, 2]`` in patch units.
        tendency: ``R_p`` normalised to unit length (zero when balanced), ``[..., N, 2]``,
            ``(dx, dy)`` with x to the right and y down.
        magnitude: ``‖R_p‖``, ``[..., N]``.
    """

    windows: Windows
    dropped: torch.Tensor
    size: torch.Tensor
    extent: torch.Tensor
    offset: torch.Tensor
    tendency: torch.Tensor
    magnitude: torch.Tensor

    @property
    def grid(self):
        return self.windows.grid

    def mask(self) -> torch.Tensor:
        """Boolean ``[..., N, N]``: row ``p`` is the indicator of ``S_p`` (``w_gt`` of Eq. 10)."""
        return field_mask(self.windows, self.dropped)

    def interactions(self) -> torch.Tensor:
        """``Σ_p |S_p|``, the interactions of an AWD+DIP model (docs/spec.md §4, §5), ``[...]``."""
        return self.size.sum(-1)


def field_mask(windows: Windows, dropped: torch.Tensor) -> torch.Tensor:
    """``S_p = {p} ∪ {i in window(p), i ∉ D}`` as a boolean ``[..., N, N]``."""
    n = windows.grid.n
    eye = torch.eye(n, dtype=torch.bool, device=windows.left.device)
    return (windows.mask() & ~dropped[..., None, :]) | eye


def responsive_field(windows: Windows, dropped: torch.Tensor | None = None) -> ResponsiveField:
    """Responsive field of every patch: its size and tendency (Eq. 6, 7).

    Args:
        windows: adaptive windows, ``[..., N]`` bounds.
        dropped: boolean ``[..., N]`` set ``D``; ``None`` means no DIP.

    >>> from patchfield.windows import Windows
    >>> from patchfield.grid import Grid
    >>> w = Windows.full(Grid(1, 3))
    >>> f = responsive_field(w, torch.tensor([False, False, True]))
    >>> f.size.tolist(), f.offset[:, 0].tolist()
    ([2, 2, 3], [1.0, -1.0, -2.0])
    """
    n = windows.grid.n
    if dropped is None:
        dropped = torch.zeros_like(windows.left, dtype=torch.bool)
    if dropped.dtype != torch.bool or dropped.shape[-1] != n:
        raise ValueError(f"dropped must be a boolean [..., {n}] tensor; got {dropped.dtype} {tuple(dropped.shape)}")
    dropped = dropped.expand_as(windows.left)
    s = field_mask(windows, dropped)
    x, y = windows.grid.coords(s.device)
    big = max(windows.grid.width, windows.grid.height)
    left = torch.where(s, x, big).amin(-1)
    right = torch.where(s, x, -1).amax(-1)
    top = torch.where(s, y, big).amin(-1)
    bottom = torch.where(s, y, -1).amax(-1)
    # R_p = ((x_r' − x_p) − (x_p − x_l'), (y_b' − y_p) − (y_p − y_t'))
    offset = torch.stack([right + left - 2 * x, bottom + top - 2 * y], dim=-1).float()
    magnitude = offset.norm(dim=-1)
    tendency = torch.where(magnitude[..., None] > 0, offset / magnitude.clamp_min(1e-12)[..., None], 0.0)
    return ResponsiveField(
        windows=windows,
        dropped=dropped,
        size=s.sum(-1),
        extent=torch.stack([left, right, top, bottom], dim=-1),
        offset=offset,
        tendency=tendency,
        magnitude=magnitude,
    )
