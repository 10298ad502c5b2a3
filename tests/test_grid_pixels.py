"""The one pixel-to-patch rule (grid.pixel_cells / patch_shares / object_patches) against a plain loop."""

from __future__ import annotations

import math

import pytest
import torch

from patchfield.grid import Grid, object_patches, patch_shares, pixel_cells


def _loop_shares(mask: torch.Tensor, grid: Grid) -> list[float]:
    """Float64 reference: a pixel goes to the patch holding its centre; share = object pixels / pixels."""
    h, w = mask.shape
    inside = [0.0] * grid.n
    count = [0] * grid.n
    for r in range(h):
        y = math.floor((r + 0.5) * grid.height / h)
        for c in range(w):
            x = math.floor((c + 0.5) * grid.width / w)
            p = y * grid.width + x
            count[p] += 1
            inside[p] += float(mask[r, c])
    return [i / n for i, n in zip(inside, count)]


def test_divisible_sizes_are_the_models_patches():
    rows, cols = pixel_cells(32, 48, Grid(4, 3))
    assert rows.tolist() == [r // 8 for r in range(32)]
    assert cols.tolist() == [c // 16 for c in range(48)]


def test_hand_worked_non_divisible():
    # 5 rows over 2 patch rows: centres 0.5,1.5 -> row 0; 2.5,3.5,4.5 -> row 1 (2.5 * 2/5 = 1.0)
    m = torch.zeros(5, 3, dtype=torch.bool)
    m[2, :] = True  # one of row 1's three pixel rows
    shares = patch_shares(m, Grid(2, 1))
    assert shares.tolist() == pytest.approx([0.0, 1 / 3])
    assert object_patches(m, Grid(2, 1)).tolist() == [False, False]
    m[3, :] = True
    assert object_patches(m, Grid(2, 1)).tolist() == [False, True]


def test_random_rectangles_match_loop():
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        h, w = (int(v) for v in torch.randint(7, 40, (2,), generator=g))
        grid = Grid(int(torch.randint(1, 7, (1,), generator=g)), int(torch.randint(1, 7, (1,), generator=g)))
        y0, y1 = sorted(int(v) for v in torch.randint(0, h + 1, (2,), generator=g))
        x0, x1 = sorted(int(v) for v in torch.randint(0, w + 1, (2,), generator=g))
        m = torch.zeros(h, w, dtype=torch.bool)
        m[y0:y1, x0:x1] = True
        ref = _loop_shares(m, grid)
        assert patch_shares(m, grid).tolist() == pytest.approx(ref, abs=1e-12)
        assert object_patches(m[None], grid)[0].tolist() == [s >= 0.5 for s in ref]


def test_too_small_is_an_error():
    with pytest.raises(ValueError, match="smaller than"):
        pixel_cells(2, 8, Grid(3, 3))
