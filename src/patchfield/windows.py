"""Adaptive attention windows (paper Eq. 4, 5, docs/spec.md §3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_alpha
from .grid import Grid, round_half_up

__all__ = ["Windows", "adaptive_windows", "box_mask", "local_windows", "top_entries"]


def _check_map(U: torch.Tensor, grid: Grid) -> None:
    if not isinstance(U, torch.Tensor) or U.dim() < 2 or U.shape[-1] != U.shape[-2]:
        shape = tuple(U.shape) if isinstance(U, torch.Tensor) else type(U).__name__
        raise ValueError(f"U must have shape [..., N, N]; got {shape}")
    grid.check(U.shape[-1], "U")
    if not torch.isfinite(U).all():
        raise ValueError("U holds NaN or Inf values")


def top_entries(U: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of the ``count`` largest entries of each ``[N, N]`` map in ``U``.

    Ties at the threshold are broken deterministically: among equal values the entry with
    the smaller row-major index ``p·N + i`` is taken first.

    >>> top_entries(torch.tensor([[1., 3.], [3., 0.]]), 2).int().tolist()
    [[0, 1], [1, 0]]
    >>> top_entries(torch.tensor([[2., 2.], [2., 2.]]), 3).int().tolist()
    [[1, 1], [1, 0]]
    """
    flat = U.reshape(*U.shape[:-2], -1)
    total = flat.shape[-1]
    if count <= 0:
        return torch.zeros_like(U, dtype=torch.bool)
    if count >= total:
        return torch.ones_like(U, dtype=torch.bool)
    # The count-th largest value is the (total - count + 1)-th smallest.
    kth = flat.kthvalue(total - count + 1, dim=-1, keepdim=True).values
    above = flat > kth
    tied = flat == kth
    need = count - above.sum(-1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(-1) <= need))
    return chosen.reshape(U.shape)


def box_mask(left, right, top, bottom, grid: Grid) -> torch.Tensor:
    """Boolean ``[..., N, N]``: row ``p`` marks the patches inside ``p``'s box (bounds inclusive)."""
    x, y = grid.coords(left.device)
    return (
        (x >= left[..., :, None])
        & (x <= right[..., :, None])
        & (y >= top[..., :, None])
        & (y <= bottom[..., :, None])
    )


@dataclass
class Windows:
    """Per-patch attention windows: inclusive bounds ``left ≤ x ≤ right``, ``top ≤ y ≤ bottom``.

    Attributes:
        left, right, top, bottom: long tensors ``[..., N]``.
        grid: the patch grid.
    """

    left: torch.Tensor
    right: torch.Tensor
    top: torch.Tensor
    bottom: torch.Tensor
    grid: Grid

    def area(self) -> torch.Tensor:
        """Cells in each window, ``(x_r − x_l + 1)(y_b − y_t + 1)``, ``[..., N]``."""
        return (self.right - self.left + 1) * (self.bottom - self.top + 1)

    def interactions(self) -> torch.Tensor:
        """``O = Σ_p area_p`` (Eq. 5 counted inclusively, docs/spec.md §3), ``[...]``."""
        return self.area().sum(-1)

    def mask(self) -> torch.Tensor:
        """Boolean ``[..., N, N]``: row ``p`` is True inside the window of ``p``."""
        return box_mask(self.left, self.right, self.top, self.bottom, self.grid)

    def bounds(self) -> torch.Tensor:
        """The four bounds stacked as ``[..., N, 4]`` (left, right, top, bottom)."""
        return torch.stack([self.left, self.right, self.top, self.bottom], dim=-1)

    def __getitem__(self, index) -> Windows:
        """Select images of a batch, e.g. ``windows[0]``."""
        return Windows(self.left[index], self.right[index], self.top[index], self.bottom[index], self.grid)

    @classmethod
    def full(cls, grid: Grid | tuple[int, int], batch_shape: tuple[int, ...] = ()) -> Windows:
        """Windows covering the whole grid (global attention, ``O = N²``)."""
        g = Grid.coerce(grid)
        z = torch.zeros(*batch_shape, g.n, dtype=torch.long)
        return cls(z, z + g.width - 1, z.clone(), z + g.height - 1, g)


def adaptive_windows(U: torch.Tensor, alpha: float, grid: Grid | tuple[int, int]) -> Windows:
    """Adaptive attention windows from the uncertainty map (Eq. 4, 5).

    The ``T_sel = round(α·N²)`` largest entries of ``U`` (whole matrix, diagonal included;
    ties by :func:`top_entries`) form ``U'``; ``B_p = {p} ∪ {i : U[p, i] ∈ U'}`` and the
    window of ``p`` is the bounding box of ``B_p``.

    Args:
        U: uncertainty map ``[..., N, N]``.
        alpha: share of entries kept, in ``(0, 1]``.
        grid: patch grid, ``Grid`` or ``(gh, gw)``.

    >>> U = torch.zeros(4, 4); U[0, 3] = 1.0  # 2x2 grid, patch 0 relates to patch 3
    >>> w = adaptive_windows(U, 1 / 16, (2, 2))
    >>> w.area().tolist(), int(w.interactions())
    ([4, 1, 1, 1], 7)
    """
    g = Grid.coerce(grid)
    _check_map(U, g)
    check_alpha(alpha)
    n = g.n
    selected = top_entries(U, round_half_up(float(alpha) * n * n))
    selected |= torch.eye(n, dtype=torch.bool, device=U.device)
    x, y = g.coords(U.device)
    big = torch.tensor(max(g.width, g.height), device=U.device)
    left = torch.where(selected, x, big).amin(-1)
    right = torch.where(selected, x, -1).amax(-1)
    top = torch.where(selected, y, big).amin(-1)
    bottom = torch.where(selected, y, -1).amax(-1)
    return Windows(left, right, top, bottom, g)


def local_windows(grid: Grid | tuple[int, int], interactions: float) -> Windows:
    """A fixed square window around every patch, sized so that ``O`` comes as close to ``interactions`` as squares
    allow.

    The window of ``p`` is the square of half-side ``r_p`` centred on ``p``, clipped at the grid's edges. With
    ``r`` the largest radius whose ``O = Σ_p area_p`` (Eq. 5, inclusive) does not pass ``interactions``, the first
    ``k`` patches in the order ``p·s mod N`` (``s`` the integer coprime to ``N`` nearest ``N/φ``, which spreads
    them over the grid) get ``r + 1``, the others ``r``; ``k`` (from 0 to ``N``) puts ``O`` nearest to
    ``interactions`` (the smaller ``k`` on a tie). A control for learned windows: locality alone at the same
    ``E_O``, to within one patch's growth.

    >>> w = local_windows((3, 3), 40.0)  # r = 0 (O = 9); s = 5: patches 0 5 1 6 2 7 3 8 4 grow by 3 5 5 3 3 5 5 3 8
    >>> w.area().tolist(), int(w.interactions())  # the first 8 grown: O = 9 + 32 = 41 (9 + 29 = 38 is farther)
    ([4, 6, 4, 6, 1, 6, 4, 6, 4], 41)
    """
    g = Grid.coerce(grid)
    n = g.n
    x, y = g.coords()

    def square(r: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return ((x - r).clamp(min=0), (x + r).clamp(max=g.width - 1), (y - r).clamp(min=0),
                (y + r).clamp(max=g.height - 1))

    radii = torch.arange(max(g.height, g.width))[:, None]  # [R, 1]: every radius against every patch
    left, right, top, bottom = square(radii)
    areas = (right - left + 1) * (bottom - top + 1)  # [R, N]
    totals = areas.sum(-1).double()
    r = max(int((totals <= float(interactions)).sum()) - 1, 0)
    radius = torch.full((n,), r)
    if r + 1 < len(radii):
        phi = (1 + 5 ** 0.5) / 2
        s = min((c for c in range(1, n + 1) if math.gcd(c, n) == 1), key=lambda c: (abs(c - n / phi), c))
        order = (torch.arange(n) * s) % n
        grown = torch.cat([torch.zeros(1, dtype=torch.double),
                           (areas[r + 1] - areas[r])[order].double().cumsum(0)]) + totals[r]  # O with k grown
        k = int((grown - float(interactions)).abs().argmin())  # argmin takes the first (smaller k) on a tie
        radius[order[:k]] = r + 1
    return Windows(*square(radius), g)
