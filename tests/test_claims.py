"""Claim measures of the reproduction study on a hand-worked 3x3 example."""

from __future__ import annotations

import math

import torch

from patchfield import Grid, Windows, responsive_field
from patchfield.study import measure_claims, patch_object_mask, summarize


def test_claims_hand_worked():
    g = Grid(3, 3)
    dropped = torch.zeros(1, 9, dtype=torch.bool)
    dropped[0, [0, 4]] = True
    field = responsive_field(Windows.full(g, (1,)), dropped)
    obj = torch.zeros(1, 9, dtype=torch.bool)
    obj[0, 2] = True  # the object is the top-right patch
    m = measure_claims(field, obj)
    assert m.dip_background.tolist() == [1.0]
    assert math.isclose(m.background_share.item(), 8 / 9, rel_tol=1e-6)
    assert m.size_object.tolist() == [7.0]
    assert math.isclose(m.size_background.item(), 58 / 8, rel_tol=1e-6)
    # full windows point every patch at the grid centre: R = (2 - 2x, 2 - 2y)
    expected = (math.sqrt(2) + 4 / math.sqrt(5) + 1) / 7
    assert math.isclose(m.cos_object.item(), expected, rel_tol=1e-5)
    assert math.isclose(m.cos_center.item(), 1.0, rel_tol=1e-6)


def test_patch_object_mask_threshold_and_summary():
    m = torch.zeros(2, 8, 8, dtype=torch.bool)
    m[0, :4, :2] = True  # half of patch 0 (4x4 patches)
    m[1, 4:, 4:] = True
    assert patch_object_mask(m, Grid(2, 2)).tolist() == [[True, False, False, False], [False, False, False, True]]
    assert patch_object_mask(m, Grid(2, 2), threshold=0.75).tolist()[0] == [False] * 4
    s = summarize(torch.tensor([0.5, 1.5]))
    assert s["mean"] == 1.0 and s["std"] == 0.5 and s["n"] == 2
