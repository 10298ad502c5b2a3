"""`benchmarks/gpu_check.py --quick`: every part of the prepared device check runs on the CPU and passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = {"correctness", "distributed", "speed", "models", "groundtruth", "training", "compile"}


def test_quick_gpu_check_writes_its_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--quick", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == result  # the JSON is the last line printed
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


def test_a_failing_check_exits_non_zero(tmp_path, monkeypatch, capsys):
    """A correctness check that fails makes the exit status 1 and names the part; the others still report."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # dataclasses look their module up there
    spec.loader.exec_module(gpu_check)
    monkeypatch.setitem(gpu_check.TOL, "capture_fp32", -1.0)
    threads = torch.get_num_threads()
    try:
        code = gpu_check.main(["--quick", "--parts", "correctness,distributed", "--out", str(tmp_path / "c.json")])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "c.json").read_text())
    assert code == 1 and result["failed"] == ["correctness"] and result["parts"]["distributed"]["ok"]
    assert not result["parts"]["correctness"]["checks"]["capture_fp32"]["ok"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"] is False
