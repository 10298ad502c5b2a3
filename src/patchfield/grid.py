"""The patch grid of a ViT input: ``gh × gw`` patches in row-major order."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Grid", "round_half_up"]


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
    """A ``height × width`` grid of patches (``gh × gw`` in SPEC.md).

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
