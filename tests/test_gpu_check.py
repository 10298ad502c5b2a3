"""`benchmarks/gpu_check.py --quick`: every part of the prepared device check runs on the CPU and passes.

The script's ``main`` runs in this process (the libraries are imported once; the run it kills is a forked child).
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_gpu_check

PARTS = {"correctness", "distributed", "speed", "models", "groundtruth", "training", "compile"}


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module; torch's thread count restored afterwards (``--quick`` sets one thread)."""
    module = load_gpu_check(monkeypatch)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)


def test_quick_gpu_check_writes_its_json(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--quick", "--out", str(out)]) == 0, capsys.readouterr().err[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result  # the JSON is the last line
    assert result["complete"]
    assert result["quick"] and result["device"] == "cpu" and result["ok"] and result["failed"] == []
    assert set(result["parts"]) == PARTS
    for name, part in result["parts"].items():
        assert part["ok"] and "error" not in part and part["seconds"] >= 0, name
    checks = result["parts"]["correctness"]["checks"]
    assert {"capture_fp32", "capture_bf16", "awd_logits_fp32", "winft_paper_logits_fp32", "winft_restrict_logits_fp32",
            "sdpa_bf16_masked", "awd_bf16_no_nan", "winft_restrict_bf16_no_nan"} <= set(checks)
    assert checks["capture_fp32"]["value"] <= 1e-4  # float32 against the float64 reference
    assert 0 < checks["capture_bf16"]["value"] <= 0.1 and checks["capture_bf16"]["dtype"] == "torch.float32"
    assert checks["sdpa_bf16_masked"]["finite"]
    speed = result["parts"]["speed"]["configs"]
    assert all(r["analysis_over_fused"] > 0 for r in speed.values())
    models = result["parts"]["models"]
    assert {"infer_awd_over_vit", "infer_winft_paper_over_vit", "train_winft_paper_over_vit"} <= set(models)
    assert result["parts"]["groundtruth"]["fp32_images_per_s"] > 0
    runs = result["parts"]["training"]["runs"]
    assert set(runs) == {"vit", "winft-paper"}
    for run in runs.values():  # killed after its first checkpoint, resumed, and bitwise the uninterrupted run
        assert run["killed_at_step"] >= 10 and run["bitwise_equal"] and run["logged_steps_equal"]
    comp = result["parts"]["compile"]
    if "skipped" not in comp:
        for kind in ("vit", "awd", "winft-paper", "winft-restrict"):
            assert comp[kind]["logits_rel_err"] <= 1e-3, kind
        assert comp["winft-paper"]["interactions_equal"]


def test_a_failing_check_exits_non_zero(gpu_check, tmp_path, monkeypatch, capsys):
    """A correctness check that fails makes the exit status 1 and names the part; the others still report."""
    monkeypatch.setitem(gpu_check.TOL, "capture_fp32", -1.0)
    code = gpu_check.main(["--quick", "--parts", "correctness,distributed", "--out", str(tmp_path / "c.json")])
    result = json.loads((tmp_path / "c.json").read_text())
    assert code == 1 and result["failed"] == ["correctness"] and result["parts"]["distributed"]["ok"]
    assert not result["parts"]["correctness"]["checks"]["capture_fp32"]["ok"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"] is False
