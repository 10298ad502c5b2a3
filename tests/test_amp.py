"""bf16 autocast for analysis and ground truth (statistics in float), and the ground truth's shard-writer thread."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import load_gpu_check, tiny_vit

import patchfield as pf
from patchfield.capture import capture_uncertainty


def test_analyze_amp_keeps_float_statistics(images, one_thread, monkeypatch):
    peaky = load_gpu_check(monkeypatch).peaky_qk_  # unit-order logits: random timm weights are near-uniform
    model = peaky(tiny_vit())
    want = capture_uncertainty(peaky(tiny_vit()).double(), images.double()).U
    off = pf.analyze(model, images, 0.1, 0.2)
    assert float((off.U.double() - want).norm() / want.norm()) < 1e-5  # float32 (docs/spec.md §2)
    got = pf.analyze(model, images, 0.1, 0.2, amp=True)
    assert got.U.dtype == torch.float32  # bf16 attention, float statistics
    rel = float((got.U.double() - want).norm() / want.norm())
    assert 1e-4 < rel < 0.1, rel  # bf16 rounding really happened, and nothing worse
    assert not torch.is_autocast_enabled("cpu")  # the context ended with the call


def test_groundtruth_amp_is_a_setting_and_write_errors_surface(tmp_path, monkeypatch, one_thread):
    from patchfield.data import build_dataset
    from patchfield.groundtruth import build, build_groundtruth

    ds = build_dataset("synthetic", "train", 32, num_images=16)
    out = tmp_path / "gt"
    store = build_groundtruth(tiny_vit(), ds, out, 0.1, 0.2, batch_size=8, shard_size=8, amp=True, progress=False,
                              device="cpu")
    assert len(store) == 16
    meta = build.read_shard_meta(out / "shard-00000.npz")
    assert meta["amp"] == "bf16"
    (out / "manifest.json").unlink()  # an unfinished store: resuming it without --amp must refuse
    with pytest.raises(ValueError, match="amp"):
        build_groundtruth(tiny_vit(), ds, out, 0.1, 0.2, batch_size=8, shard_size=8, progress=False, device="cpu")

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(build, "write_shard", broken)
    with pytest.raises(OSError, match="disk full"):  # raised in the writer thread, re-raised in the caller
        build_groundtruth(tiny_vit(), ds, tmp_path / "gt2", 0.1, 0.2, batch_size=8, shard_size=8, progress=False,
                          device="cpu")
    assert not list((tmp_path / "gt2").glob("shard-*.npz"))


def test_analyze_amp_and_device_options(tmp_path, monkeypatch, capsys, one_thread):
    """`analyze --amp` (bf16 autocast) writes the same kind of record; a missing device is one line, exit 2."""
    from PIL import Image

    from patchfield.cli import main

    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
    args = ["analyze", str(image), "--model", "vit_tiny_patch16_224", "--random-weights", "--image-size", "32",
            "--no-figures"]
    assert main([*args, "--out", str(tmp_path / "fp32")]) == 0
    assert main([*args, "--amp", "--device", "cpu", "--out", str(tmp_path / "bf16")]) == 0
    a, b = (json.loads((tmp_path / k / "a" / "fields.json").read_text()) for k in ("fp32", "bf16"))
    assert a.keys() == b.keys() and a["grid"] == b["grid"] == [2, 2] and len(b["windows"]) == 4
    assert all(np.isfinite(b["column_variance"]))  # bf16 accuracy itself: benchmarks/gpu_check.py (correctness)
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*args, "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "CUDA is not available" in err and len(err.splitlines()) == 1
