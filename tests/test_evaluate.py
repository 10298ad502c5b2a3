"""evaluate(): top-1, top-5 and E_O by kind against plain loops; `patchfield evaluate` on a run folder."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from patchfield.grid import Grid
from patchfield.training import evaluate
from patchfield.windows import Windows


class _Fake(nn.Module):
    """A classifier with a patch grid that accepts the AWD/WinfT call forms (a test double for the kinds)."""

    def __init__(self, grid: tuple[int, int], classes: int, winft: bool = False) -> None:
        super().__init__()
        self.patch_embed = SimpleNamespace(grid_size=grid)
        torch.manual_seed(3)
        self.lin = nn.Linear(3, classes)
        self.winft = winft
        self.calls: list[dict] = []

    def forward(self, x, field_mask=None, dropped=None, return_interactions=False):
        self.calls.append({"field_mask": field_mask, "dropped": dropped})
        logits = self.lin(x.mean((2, 3)))
        if self.winft and return_interactions:  # pretend W kept (image mean * 10) mod N^2 ones
            return logits, (x.flatten(1).sum(1).abs() * 10).floor() % 16
        return logits


def _reference(model, batches, kind, n):
    """Plain loops: top-1, top-5 hits and the interactions by kind."""
    top1 = top5 = count = 0
    inter = 0.0
    for batch in batches:
        x, y = batch[0], batch[1]
        with torch.no_grad():
            logits = model.lin(x.mean((2, 3))).double()
        for b in range(len(y)):
            row = logits[b].tolist()
            order = sorted(range(len(row)), key=lambda c: -row[c])
            top1 += int(order[0] == int(y[b]))
            top5 += int(int(y[b]) in order[: min(5, len(row))])
            count += 1
            if kind == "vit":
                inter += n * n
            elif kind in ("awd", "awd-dip"):
                inter += sum(int(v) for v in batch[2][b].flatten().tolist())
            else:
                inter += float(int(abs(float(x[b].sum())) * 10) % 16)
    return top1 / count, top5 / count, inter / count


def _batches(with_fields: bool, classes: int = 7):
    g = torch.Generator().manual_seed(0)
    out = []
    grid = Grid(2, 2)
    for _ in range(3):
        x = torch.randn(5, 3, 8, 8, generator=g)
        y = torch.randint(0, classes, (5,), generator=g)
        if with_fields:
            lo = torch.randint(0, 2, (5, 4, 2), generator=g)
            w = Windows(lo[..., 0] * 0, lo[..., 0], lo[..., 1] * 0, lo[..., 1], grid)
            dropped = torch.rand(5, 4, generator=g) < 0.3
            out.append((x, y, w.mask(), dropped))
        else:
            out.append((x, y))
    return out


@pytest.mark.parametrize("kind", ["vit", "awd", "awd-dip", "winft-paper"])
def test_evaluate_matches_loops(kind):
    model = _Fake((2, 2), 7, winft=kind.startswith("winft"))
    batches = _batches(kind in ("awd", "awd-dip"))
    result = evaluate(model, batches, kind, progress=False)
    top1, top5, eo = _reference(model, batches, kind, 4)
    assert result["num_images"] == 15 and result["top5_k"] == 5
    assert result["top1"] == pytest.approx(top1, abs=1e-12)
    assert result["top5"] == pytest.approx(top5, abs=1e-12)
    assert result["eo"] == pytest.approx(eo, abs=1e-9)
    assert result["eo_full"] == 16.0 and result["grid"] == [2, 2]
    if kind == "awd":
        assert all(c["field_mask"] is not None and c["dropped"] is None for c in model.calls)
    if kind == "awd-dip":
        assert all(c["dropped"] is not None and c["dropped"].dtype == torch.bool for c in model.calls)


def test_evaluate_top5_with_few_classes_and_errors():
    model = _Fake((2, 2), 3)
    result = evaluate(model, _batches(False, classes=3), "vit", progress=False)
    assert result["top5_k"] == 3 and result["top5"] == 1.0
    with pytest.raises(ValueError, match="ground-truth store"):
        evaluate(model, _batches(False), "awd", progress=False)
    with pytest.raises(ValueError, match="unknown kind"):
        evaluate(model, _batches(False), "cnn", progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [], "vit", progress=False)


def test_evaluate_cli_on_a_run_folder(tmp_path, capsys, one_thread):
    from patchfield.cli import main

    tiny = '{"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "img_size": 16}'
    run = tmp_path / "run"
    assert main(["train", "--model", "vit_tiny_patch16_224", "--model-kwargs", tiny, "--data-kwargs",
                 '{"num_images": 16}', "--steps", "2", "--warmup-steps", "1", "--batch-size", "8",
                 "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--data-kwargs", '{"num_images": 12}', "--batch-size", "5",
                 "--out", str(out), "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved
    assert saved["num_images"] == 12 and saved["kind"] == "vit" and saved["top5_k"] == 4
    assert saved["eo"] == saved["eo_full"] == 16.0 and 0.0 <= saved["top1"] <= saved["top5"] == 1.0
    # the same model given as --model/--weights gives the same numbers
    assert main(["evaluate", "--model", "vit_tiny_patch16_224", "--model-kwargs", tiny, "--weights",
                 str(run / "model.safetensors"), "--data-kwargs", '{"num_images": 12}', "--no-progress"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["top1"] == saved["top1"] and again["num_images"] == 12
    assert main(["evaluate", "--model", str(run), "--data-kwargs", '{"num_images": 12}', "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == saved["top1"]
    # usage errors are reported, not raised
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert main(["evaluate", str(run), "--kind", "awd"]) == 2
