"""One count of interactions: count_interactions(mask) agrees with every other E_O (docs/spec.md §3, §5, §8)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_vit

import patchfield as pf
import patchfield.models as pm
from patchfield.data import SyntheticShapes
from patchfield.encoding import decode_field, encode_field
from patchfield.interactions import count_interactions, expected_interactions
from patchfield.kinds import KIND_NAMES, kind_by_name


def test_count_interactions_hand_worked_and_errors():
    m = torch.tensor([[[True, False], [True, True]], [[False, False], [False, True]]])
    assert count_interactions(m).tolist() == [3, 1]
    assert count_interactions(m).dtype == torch.int64
    assert expected_interactions(count_interactions(m)) == 2.0
    with pytest.raises(ValueError, match="boolean"):
        count_interactions(m.float())
    with pytest.raises(ValueError, match=r"\[..., N, N\]"):
        count_interactions(torch.ones(2, 3, dtype=torch.bool))


def _fields(b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    U = torch.rand(b, 16, 16, generator=g, dtype=torch.float64)
    return pf.analyze_map(U, (4, 4), alpha=0.08, beta=0.25)


def test_compact_counts_agree_with_the_mask_count():
    windows, dropped, field = _fields()
    assert torch.equal(count_interactions(windows.mask()), windows.interactions())
    assert torch.equal(count_interactions(field.mask()), field.interactions())
    decoded = decode_field(encode_field(field))
    assert torch.equal(count_interactions(decoded.mask()), field.interactions())
    assert torch.equal(count_interactions(decoded.windows.mask()), windows.interactions())
    n = 16
    assert count_interactions(pf.Windows.full((4, 4), (2,)).mask()).tolist() == [n * n] * 2


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_model_kind_counts_what_it_attends_with(kind):
    model = tiny_vit(depth=3)
    if kind.startswith("awd"):
        pm.apply_awd(model)
    elif kind.startswith("winft"):
        pm.apply_winft(model, kind.split("-")[1])
    windows, dropped, field = _fields()
    # what the training data hands in (patchfield.training.sources.attach_fields): S_p for awd-dip, windows for awd
    mask = field.mask() if kind == "awd-dip" else windows.mask()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, _, counts = kind_by_name(kind).forward(model, x, mask, dropped)
    assert counts.shape == (3,) and logits.shape == (3, 5)
    if kind == "vit":
        assert counts.tolist() == [256.0] * 3
    elif kind == "awd":
        assert torch.equal(counts, windows.interactions().float())
        allowed = pm.awd_attention_mask(mask, None, 1)[:, 0, 1:, 1:]  # the mask the model attends with
        assert torch.equal(count_interactions(allowed), windows.interactions())
    elif kind == "awd-dip":
        assert torch.equal(counts, field.interactions().float())
        allowed = pm.awd_attention_mask(mask, dropped, 1)[:, 0, 1:, 1:]
        assert torch.equal(count_interactions(allowed), field.interactions())
    else:
        with torch.no_grad():
            _, W = model(x, return_windows=True)
        assert torch.equal(counts, count_interactions(W).float().mean(1))
        assert 0 < float(counts.min()) and float(counts.max()) < 256


def test_analysis_and_store_count_the_same(tmp_path):
    from patchfield.groundtruth import build_groundtruth

    model = tiny_vit(num_classes=4)
    ds = SyntheticShapes(12, image_size=32, num_classes=4, seed=5)
    images = torch.stack([ds[i][0] for i in range(12)])
    res = pf.analyze(model, images, 0.1, 0.25)
    assert torch.equal(res.interactions(), count_interactions(res.field.mask()))
    assert torch.equal(res.windows.interactions(), count_interactions(res.windows.mask()))
    assert res.expected_interactions() == float(count_interactions(res.field.mask()).double().mean())
    store = build_groundtruth(model, ds, tmp_path / "gt", alpha=0.1, beta=0.25, batch_size=12, progress=False)
    codes = decode_field(store.codes(slice(None)))
    assert np.array_equal(store.interactions, count_interactions(codes.mask()).numpy())
    assert np.array_equal(store.window_interactions, count_interactions(codes.windows.mask()).numpy())
    assert store.expected_interactions() == pytest.approx(float(count_interactions(codes.mask()).double().mean()))
    assert store.expected_interactions(dip=False) == pytest.approx(
        float(count_interactions(codes.windows.mask()).double().mean())
    )
    assert store.expected_interactions(dip=False) > store.expected_interactions()
    # run.json of an AWD run records the windows' O (what it trained on); awd-dip and WinfT Σ|S_p|
    from patchfield.training.loop import Prepared, _run_info

    prep = Prepared(model=None, dataset=None, store=store, num_classes=4, image_size=32, grid=store.grid)
    for kind, dip in (("awd", False), ("awd-dip", True), ("winft-paper", True)):
        cfg = SimpleNamespace(groundtruth=str(tmp_path / "gt"), model="m", kind=kind_by_name(kind),
                              model_kwargs={}, data="synthetic", data_kwargs={}, to_dict=dict)
        info = _run_info(cfg, prep, 1)
        assert info["groundtruth"]["expected_interactions"] == store.expected_interactions(dip=dip)
