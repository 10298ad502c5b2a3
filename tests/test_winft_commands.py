"""WinfT under the commands that hook its blocks: a WinfT forward calls its blocks as modules,
so ``block_output_norms`` (``stats``, ``explore``) sees every block, as in a ViT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from patchfield import block_output_norms, load_model
from patchfield.cli import main

WINFT = Path(__file__).resolve().parents[1] / "src" / "patchfield" / "assets" / "demo" / "winft"


def _photo(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_block_output_norms_of_a_winft_are_its_blocks_outputs(one_thread):
    model = load_model(str(WINFT))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), block_output_norms(model) as norms:
        logits, windows = model(x, return_windows=True)
    got = norms.result()
    with torch.no_grad():  # by hand: the blocks one after the other, through their plain (timm) forward
        h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        want = []
        for blk in model.blocks:
            h = blk(h)
            want.append(torch.linalg.vector_norm(h, dim=-1))
        ref = model.forward_head(model.norm(h))
    assert got.shape == (2, 4, 65)
    torch.testing.assert_close(got, torch.stack(want, dim=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
    assert windows.shape == (2, 4, 64, 64) and windows.any() and not windows.all()


def test_stats_and_explore_run_a_winft(tmp_path, one_thread):
    photo = _photo(tmp_path / "photo.png")
    assert main(["stats", str(photo), "--model", str(WINFT), "--no-figures", "--out", str(tmp_path / "s")]) == 0
    (summary,) = json.loads((tmp_path / "s" / "stats.json").read_text())["models"]
    assert summary["blocks"] == 4 and summary["layers"] == 4 and summary["artefact_block"] == 3
    norms = summary["per_image"][0]
    assert all(np.isfinite(v) for v in summary["mean_distance"][0])
    assert norms["image"] == str(photo)
    page = tmp_path / "page.html"
    assert main(["explore", str(photo), "--model", str(WINFT), "--out", str(page)]) == 0
    assert page.stat().st_size > 1000
