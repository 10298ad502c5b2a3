"""The patch grid of a ViT input: ``gh × gw`` patches in row-major order."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Grid", "object_patches", "patch_shares", "pixel_cells", "round_half_up"]


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves upwards (``round_half_up(2.5) == 3``).

    Python's ``round`` rounds halves to even; the paper's counts ``α·N²`` and ``β·N``
    are read with halves rounded up so that the count grows with the rate.

    >>> round_half_up(0.5), round_half_up(1.49), round_half_up(19.6)
    (1, 1, 20)
    """
    return int(torch.floor(torch.tensor(float(x), dtype=torch.float64) + 0.5).item())


@dataclass(frozen=True)
class Grid:
    """A ``height × width`` grid of patches (``gh × gw`` in docs/spec.md).

    Patch ``p`` sits at column ``x = p % width`` and row ``y = p // width``.

    >>> g = Grid(2, 3)
    >>> g.n
    6
    >>> g.coords()[0].tolist(), g.coords()[1].tolist()
    ([0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1])
    """

    height: int
    width: int

    def __post_init__(self) -> None:
        if int(self.height) < 1 or int(self.width) < 1:
            raise ValueError(f"a patch grid needs at least 1x1 patches, got {self.height}x{self.width}")

    @property
    def n(self) -> int:
        """Number of patches ``N = gh·gw``."""
        return self.height * self.width

    def coords(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)``: long tensors ``[N]`` of each patch's column and row."""
        p = torch.arange(self.n, device=device)
        return p % self.width, torch.div(p, self.width, rounding_mode="floor")

    @classmethod
    def coerce(cls, grid: Grid | tuple[int, int]) -> Grid:
        """Accept a :class:`Grid` or a ``(gh, gw)`` tuple."""
        if isinstance(grid, Grid):
            return grid
        try:
            gh, gw = grid
        except (TypeError, ValueError):
            raise ValueError(f"grid must be a Grid or a (gh, gw) pair, got {grid!r}") from None
        return cls(int(gh), int(gw))

    def check(self, n: int, what: str = "tensor") -> None:
        """Raise ``ValueError`` unless ``n`` equals this grid's patch count."""
        if n != self.n:
            raise ValueError(
                f"{what} has {n} patches but the grid {self.height}x{self.width} has {self.n}; "
                "pass the grid the attention was captured on (AttentionMaps.grid)"
            )


def pixel_cells(height: int, width: int, grid: Grid | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixel-to-patch rule, the only one in patchfield: a pixel belongs to the patch that holds its centre.

    An ``height × width`` image is laid over the grid proportionally (patch row ``y`` spans
    ``[y·H/gh, (y+1)·H/gh)``); pixel row ``r`` is in patch row ``floor((r + 0.5)·gh / H)``, and
    likewise for columns. For a model input ``H = gh·ph`` this is ``r // ph``, the patch the model
    embeds the pixel in. Returns ``(rows [H], cols [W])`` long tensors of patch rows and columns.

    >>> rows, cols = pixel_cells(5, 4, Grid(2, 2))
    >>> rows.tolist(), cols.tolist()
    ([0, 0, 1, 1, 1], [0, 0, 1, 1])
    """
    g = Grid.coerce(grid)
    if int(height) < g.height or int(width) < g.width:
        raise ValueError(
            f"an image of {height}x{width} pixels is smaller than the {g.height}x{g.width} patch grid"
        )

    def cells(n: int, parts: int) -> torch.Tensor:
        return torch.div(torch.arange(n, dtype=torch.long) * (2 * parts) + parts, 2 * n, rounding_mode="floor")

    return cells(int(height), g.height), cells(int(width), g.width)


def patch_shares(masks: torch.Tensor, grid: Grid | tuple[int, int]) -> torch.Tensor:
    """Share of each patch's pixels (by :func:`pixel_cells`) inside a pixel mask: ``[..., H, W]`` → ``[..., N]``.

    >>> m = torch.zeros(5, 4, dtype=torch.bool); m[:2, :] = True
    >>> patch_shares(m, Grid(2, 2)).tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    if masks.dim() < 2:
        raise ValueError(f"masks must be [..., H, W]; got {tuple(masks.shape)}")
    g = Grid.coerce(grid)
    h, w = int(masks.shape[-2]), int(masks.shape[-1])
    rows, cols = pixel_cells(h, w, g)
    ry = torch.nn.functional.one_hot(rows, g.height).to(torch.float64, copy=False).to(masks.device)  # [H, gh]
    rx = torch.nn.functional.one_hot(cols, g.width).to(torch.float64, copy=False).to(masks.device)  # [W, gw]
    inside = ry.transpose(0, 1) @ masks.to(torch.float64) @ rx  # [..., gh, gw]
    area = ry.sum(0)[:, None] * rx.sum(0)[None, :]
    return (inside / area).flatten(-2)


def object_patches(masks: torch.Tensor, grid: Grid | tuple[int, int], threshold: float = 0.5) -> torch.Tensor:
    """Object patches of pixel masks: True where at least ``threshold`` (half) of the patch's pixels are object.

    ``[..., H, W]`` (non-zero = object) → bool ``[..., N]``; the pixel-to-patch rule is :func:`pixel_cells`.

    >>> m = torch.zeros(1, 4, 4, dtype=torch.bool); m[0, :2, :2] = True
    >>> object_patches(m, Grid(2, 2)).tolist()
    [[True, False, False, False]]
    """
    return patch_shares(masks != 0, grid) >= threshold
