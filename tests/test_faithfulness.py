"""Faithfulness metrics: AUC, attention rollout, orderings and deletion/insertion curves against hand references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import patchfield as pf
from patchfield.cli import main
from patchfield.figures.faithfulness import plot_faithfulness
from patchfield.metrics import (
    attention_rollout,
    auc,
    deletion_insertion,
    dip_ordering,
    evaluate_faithfulness,
    order_by_scores,
    random_ordering,
    rollout_scores,
)


def test_auc_hand_worked():
    assert float(auc([1.0, 0.5, 0.0])) == pytest.approx(0.5)  # a straight line from 1 to 0
    assert float(auc([0.0, 1.0, 1.0, 0.0])) == pytest.approx(2 / 3)  # 1/6 + 1/3 + 1/6
    # x = 0, 0.25, 1: 0.25 * (2 + 2) / 2 + 0.75 * (2 + 0) / 2 = 0.5 + 0.75
    assert float(auc([2.0, 2.0, 0.0], [0.0, 0.25, 1.0])) == pytest.approx(1.25)
    np.testing.assert_allclose(auc(np.array([[1.0, 1.0], [0.0, 1.0]])), [1.0, 0.5])
    with pytest.raises(ValueError, match="increasing"):
        auc([1.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="at least 2"):
        auc([1.0])


def _rollout_reference(attn: np.ndarray, residual: float) -> np.ndarray:
    """Plain float64 loops: mean over heads, add r·I, renormalise rows, multiply layer by layer."""
    layers, heads, t, _ = attn.shape
    result = None
    for layer in range(layers):
        a = [[sum(attn[layer, h, i, j] for h in range(heads)) / heads for j in range(t)] for i in range(t)]
        a = [[residual * (i == j) + (1 - residual) * a[i][j] for j in range(t)] for i in range(t)]
        a = [[v / sum(row) for v in row] for row in a]
        if result is None:
            result = a
        else:
            result = [[sum(a[i][m] * result[m][j] for m in range(t)) for j in range(t)] for i in range(t)]
    return np.array(result)


def test_rollout_against_float64_loops():
    g = torch.Generator().manual_seed(0)
    attn = torch.softmax(torch.randn(2, 3, 2, 5, 5, generator=g), dim=-1)  # [B, L, k, T, T]
    for residual in (0.5, 0.0, 0.3):
        got = attention_rollout(attn, residual)
        for b in range(2):
            np.testing.assert_allclose(got[b].numpy(), _rollout_reference(attn[b].double().numpy(), residual),
                                       rtol=1e-6, atol=1e-12)
    maps = pf.AttentionMaps(attn, pf.Grid(2, 2), 1, (0, 1, 2))
    ref = _rollout_reference(attn[1].double().numpy(), 0.5)
    np.testing.assert_allclose(rollout_scores(maps)[1].numpy(), ref[0, 1:], rtol=1e-6)
    no_prefix = torch.softmax(torch.randn(1, 2, 2, 4, 4, generator=g), dim=-1)
    ref = _rollout_reference(no_prefix[0].double().numpy(), 0.5)
    maps = pf.AttentionMaps(no_prefix, pf.Grid(2, 2), 0, (0, 1))
    np.testing.assert_allclose(rollout_scores(maps)[0].numpy(), ref.mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="residual"):
        attention_rollout(attn, 1.5)


def test_orderings():
    U = torch.tensor([[1.0, 0.0, 5.0, 1.0], [3.0, 0.0, 4.0, 3.0], [2.0, 0.0, 3.0, 2.0], [0.0, 1.0, 0.0, 0.0]])
    var = pf.column_variance(U).tolist()
    expected = sorted(range(4), key=lambda i: (-var[i], i))  # columns 0 and 3 tie: 0 first
    assert dip_ordering(U).tolist() == expected
    assert dip_ordering(U).tolist()[:2] == [2, 0]
    assert order_by_scores(torch.tensor([[1.0, 1.0, 2.0]])).tolist() == [[2, 0, 1]]
    r = random_ordering(3, 10, seed=4)
    assert torch.equal(r.sort(-1).values, torch.arange(10).expand(3, 10))
    assert torch.equal(r, random_ordering(3, 10, seed=4)) and not torch.equal(r, random_ordering(3, 10, seed=5))


class _PixelLinear(nn.Module):
    """A linear classifier on the raw pixels: any pixel change moves its output."""

    def __init__(self, pixels: int, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(pixels, classes)

    def forward(self, x):
        return self.fc(x.flatten(1) * 4)


@torch.no_grad()
def test_deletion_insertion_against_loops():
    torch.manual_seed(1)
    images = torch.randn(2, 3, 12, 12)
    model = _PixelLinear(3 * 12 * 12).eval()
    grid = pf.Grid(3, 3)  # 4-pixel patches
    orderings = torch.stack([torch.randperm(9), torch.randperm(9)])
    base = torch.randn(2, 3, 12, 12)
    out = deletion_insertion(model, images, orderings, grid, steps=3, baseline=base, chunk=5)
    counts = [0, 3, 6, 9]  # round(s * 9 / 3)
    target = model(images).argmax(-1)
    assert out["target"].tolist() == target.tolist()
    np.testing.assert_allclose(out["fractions"].numpy(), np.array(counts) / 9)
    for b in range(2):
        for s, k in enumerate(counts):
            first = set(orderings[b, :k].tolist())
            deleted, inserted = images[b].clone(), base[b].clone()
            for y in range(12):
                for x in range(12):
                    if (y // 4) * 3 + x // 4 in first:
                        deleted[:, y, x] = base[b, :, y, x]
                        inserted[:, y, x] = images[b, :, y, x]
            p_del = model(deleted[None]).double().softmax(-1)[0, target[b]].item()
            p_ins = model(inserted[None]).double().softmax(-1)[0, target[b]].item()
            assert out["deletion"][b, s].item() == pytest.approx(p_del, rel=1e-5)
            assert out["insertion"][b, s].item() == pytest.approx(p_ins, rel=1e-5)
    mean_base = deletion_insertion(model, images, orderings, grid, steps=1)
    p_zero = model(torch.zeros(1, 3, 12, 12)).softmax(-1)[0, target]
    np.testing.assert_allclose(mean_base["deletion"][:, 1].numpy(), p_zero.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="permutation"):
        deletion_insertion(model, images, torch.zeros(2, 9, dtype=torch.long), grid)
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion(model, images, orderings, grid, baseline="noise")


def test_evaluate_faithfulness_and_plot():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=3).eval()
    torch.manual_seed(2)
    batches = [torch.randn(2, 3, 64, 64), (torch.randn(1, 3, 64, 64), torch.tensor([0]))]
    result = evaluate_faithfulness(model, batches, steps=4, seed=3)
    assert result.methods == ["dip", "random", "rollout"]
    assert result.deletion["dip"].shape == (3, 5) and result.insertion["rollout"].shape == (3, 5)
    maps = pf.capture_attention(model, batches[0])
    order = dip_ordering(pf.interaction_uncertainty(maps.patch_block()))
    ref = deletion_insertion(model, batches[0], order, maps.grid, steps=4)
    np.testing.assert_allclose(result.deletion["dip"][:2], ref["deletion"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(result.insertion["dip"][:2], ref["insertion"].numpy(), rtol=1e-5)
    ref = deletion_insertion(model, batches[0], random_ordering(2, 16, 3), maps.grid, steps=4)
    np.testing.assert_allclose(result.deletion["random"][:2], ref["deletion"].numpy(), rtol=1e-5)
    summary = result.summary()
    assert summary["rollout"]["insertion_auc"] == pytest.approx(float(auc(result.insertion["rollout"]).mean()))
    for m in result.methods:  # all orderings start and end at the same two probabilities
        np.testing.assert_allclose(result.deletion[m][:, 0], result.insertion[m][:, -1], rtol=1e-5)
    fig = plot_faithfulness(result)
    assert len(fig.axes) == 2
    assert [t.get_text().split(" (")[0] for t in fig.axes[0].get_legend().get_texts()] == [
        "DIP column variance", "random", "attention rollout"]
    with pytest.raises(ValueError, match="unknown methods"):
        evaluate_faithfulness(model, batches, methods=["gradcam"])


def test_faithfulness_cli(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=3)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "faith"
    code = main(["faithfulness", "--data", "synthetic", "--num-images", "3", "--model", "test_vit", "--weights",
                 str(tmp_path / "w.safetensors"), "--image-size", "64", "--steps", "2", "--methods", "dip", "random",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0
    record = json.loads((out / "faithfulness.json").read_text())
    assert set(record["summary"]) == {"dip", "random"} and record["summary"]["dip"]["images"] == 3
    assert record["fractions"] == [0.0, 0.5, 1.0]
    assert (out / "faithfulness.png").stat().st_size > 1000
    assert main(["faithfulness", "--model", "test_vit", "--random-weights", "--out", str(out)]) == 2
    assert main(["faithfulness", "--data", "synthetic", "--model", "test_vit", "--random-weights", "--device",
                 "nonsense", "--out", str(out)]) == 2


def test_backbone_without_classifier_is_refused(images):
    from conftest import tiny_vit

    from patchfield.errors import UsageError
    from patchfield.metrics.faithfulness import deletion_insertion

    model = tiny_vit(num_classes=0)
    orderings = torch.arange(16).expand(3, 16)
    with pytest.raises(UsageError, match="no classifier head"):
        deletion_insertion(model, images, orderings, pf.Grid(4, 4), steps=2)


def test_awd_vit_is_refused_not_run_globally(images):
    from conftest import tiny_vit

    from patchfield.errors import UsageError
    from patchfield.metrics.faithfulness import deletion_insertion

    orderings = torch.arange(16).expand(3, 16)
    with pytest.raises(UsageError, match="field_mask"):
        deletion_insertion(pf.apply_awd(tiny_vit()), images, orderings, pf.Grid(4, 4), steps=2)
