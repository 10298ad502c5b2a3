"""Exact compact encoding of responsive fields (docs/spec.md §6, window ground truth ``w_gt``).

A field is rebuilt exactly from the four window bounds of every patch plus the set ``D``:
``4`` bytes per patch (``uint8`` bounds; ``uint16`` for grids wider than 256) and one bit per
patch for ``D``, instead of ``N`` bits per patch for the dense ``N × N`` mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .field import ResponsiveField, responsive_field
from .grid import Grid
from .windows import Windows

__all__ = ["FieldCode", "encode_field", "decode_field"]


@dataclass(frozen=True)
class FieldCode:
    """Compact responsive fields of a batch of images.

    Attributes:
        bounds: ``[B, N, 4]`` unsigned ints: left, right, top, bottom of each window.
        dropped: ``[B, ceil(N / 8)]`` ``uint8``: the set ``D`` packed with ``np.packbits``.
        grid: the patch grid.
    """

    bounds: np.ndarray
    dropped: np.ndarray
    grid: Grid

    def __len__(self) -> int:
        return self.bounds.shape[0]

    def nbytes(self) -> int:
        return int(self.bounds.nbytes + self.dropped.nbytes)

    def dropped_mask(self) -> np.ndarray:
        """``D`` unpacked as boolean ``[B, N]``."""
        return np.unpackbits(self.dropped, axis=-1, count=self.grid.n).astype(bool)

    def __getitem__(self, index) -> FieldCode:
        bounds = self.bounds[index]
        dropped = self.dropped[index]
        if bounds.ndim == 2:
            bounds, dropped = bounds[None], dropped[None]
        return FieldCode(bounds, dropped, self.grid)


def encode_field(field: ResponsiveField) -> FieldCode:
    """Encode a batch of responsive fields ``[B, N]`` (or one image, ``[N]``).

    >>> from patchfield.grid import Grid
    >>> w = Windows.full(Grid(2, 3))
    >>> code = encode_field(responsive_field(w, torch.tensor([True, False, False, False, False, False])))
    >>> code.bounds.shape, code.nbytes()
    ((1, 6, 4), 25)
    >>> bool((decode_field(code).mask() == responsive_field(w, torch.tensor([True] + [False] * 5)).mask()).all())
    True
    """
    g = field.grid
    bounds = field.windows.bounds().detach().cpu()
    dropped = field.dropped.detach().cpu()
    if bounds.dim() == 2:
        bounds, dropped = bounds[None], dropped[None]
    dtype = np.uint8 if max(g.width, g.height) <= 256 else np.uint16
    return FieldCode(
        bounds=bounds.numpy().astype(dtype),
        dropped=np.packbits(dropped.numpy().astype(bool), axis=-1),
        grid=g,
    )


def decode_field(code: FieldCode, device: torch.device | str | None = None) -> ResponsiveField:
    """Rebuild the :class:`ResponsiveField` (and so its ``N × N`` mask) from a :class:`FieldCode`."""
    b = torch.as_tensor(code.bounds.astype(np.int64), device=device)
    if b.shape[-2:] != (code.grid.n, 4):
        raise ValueError(f"bounds must be [B, {code.grid.n}, 4] for grid {code.grid}; got {tuple(b.shape)}")
    windows = Windows(b[..., 0], b[..., 1], b[..., 2], b[..., 3], code.grid)
    dropped = torch.as_tensor(code.dropped_mask(), device=device)
    return responsive_field(windows, dropped)
