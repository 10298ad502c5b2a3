"""Every place that maps pixels to patches uses the one rule (patchfield.grid): figures and metrics agree."""

from __future__ import annotations

import numpy as np
import torch

from patchfield.drawing import upsample
from patchfield.figures import patch_mask
from patchfield.grid import Grid, object_patches
from patchfield.metrics.faithfulness import _pixel_patches


def _loop_object_patches(mask: torch.Tensor, grid: Grid) -> list[bool]:
    """Float64 loop: a pixel belongs to the patch holding its centre; object patch = at least half its pixels."""
    h, w = mask.shape
    inside = [0.0] * grid.n
    count = [0.0] * grid.n
    for r in range(h):
        for c in range(w):
            p = int((r + 0.5) * grid.height // h) * grid.width + int((c + 0.5) * grid.width // w)
            count[p] += 1
            inside[p] += float(mask[r, c])
    return [i / n >= 0.5 for i, n in zip(inside, count)]


def test_call_sites_agree_on_random_rectangles():
    g = torch.Generator().manual_seed(12)
    non_divisible = 0
    for _ in range(100):
        grid = Grid(int(torch.randint(2, 7, (1,), generator=g)), int(torch.randint(2, 7, (1,), generator=g)))
        h, w = (int(v) for v in torch.randint(7, 41, (2,), generator=g))
        non_divisible += h % grid.height != 0 or w % grid.width != 0
        y0, y1 = sorted(int(v) for v in torch.randint(0, h + 1, (2,), generator=g))
        x0, x1 = sorted(int(v) for v in torch.randint(0, w + 1, (2,), generator=g))
        mask = torch.zeros(h, w, dtype=torch.bool)
        mask[y0:y1, x0:x1] = True

        expected = _loop_object_patches(mask, grid)
        assert object_patches(mask, grid).tolist() == expected
        assert patch_mask(mask, grid).tolist() == expected  # figures/attention (Fig. 2)
        cells = _pixel_patches(grid, (h, w))  # metrics/faithfulness (deletion/insertion)
        drawn = upsample(np.arange(grid.n), grid, (h, w))  # drawing.upsample (every heat map)
        assert np.array_equal(drawn, cells.numpy())
        inside = torch.zeros(grid.n, dtype=torch.float64).index_add_(0, cells.flatten(), mask.flatten().double())
        share = inside / torch.bincount(cells.flatten(), minlength=grid.n).double()
        assert (share >= 0.5).tolist() == expected
    assert non_divisible > 80


def test_hand_worked_five_rows_over_two_patches():
    # pixel rows 0, 1 -> patch row 0; rows 2, 3, 4 -> patch row 1 (centre 2.5 * 2/5 = 1.0)
    grid = Grid(2, 1)
    assert _pixel_patches(grid, (5, 1)).flatten().tolist() == [0, 0, 1, 1, 1]
    assert upsample(np.array([7, 9]), grid, (5, 1)).flatten().tolist() == [7, 7, 9, 9, 9]
    m = torch.zeros(5, 1, dtype=torch.bool)
    m[1:4] = True  # 1 of 2 pixels of patch 0, 2 of 3 of patch 1
    assert patch_mask(m, grid).tolist() == [True, True]
    m[1] = False
    assert patch_mask(m, grid).tolist() == [False, True]
