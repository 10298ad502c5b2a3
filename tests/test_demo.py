"""The shipped demo models claim what they reach, and the demo writes its whole output."""

from __future__ import annotations

import json

import pytest

from patchfield.demo import demo_models_dir, run_demo
from patchfield.training import evaluate_run


@pytest.mark.parametrize("name", ["vit", "winft"])
def test_shipped_models_reach_claimed_accuracy(name):
    models = demo_models_dir()
    claimed = json.loads((models / "metrics.json").read_text())
    r = evaluate_run(run_dir=str(models / name), data="synthetic", split="val",
                     data_kwargs={"num_images": claimed["val_images"]}, progress=False)
    assert r["top1"] == pytest.approx(claimed[name]["top1"], abs=2e-3)
    assert r["top1"] >= 0.75  # a 4-class task: far above chance
    if name == "winft":
        assert 0 < r["eo"] < r["eo_full"]


def test_demo_writes_figures_explorer_and_summary(tmp_path):
    s = run_demo(tmp_path, num_images=2)
    assert s["val_top1"]["vit"] == pytest.approx(s["claimed_top1"]["vit"], abs=2e-3)
    assert 0 < s["eo_analysed_images"] < s["eo_full"] == 64**2
    page = (tmp_path / "explorer.html").read_text()
    assert "<script" in page and "http://" not in page and "https://" not in page
    for i in range(2):
        folder = tmp_path / "figures" / f"val_{i:03d}"
        names = {p.name for p in folder.glob("*.png")}
        assert {"fig2_pair_attention.png", "fig5_indiscriminative.png", "fig13_winft_windows.png"} <= names
        assert json.loads((folder / "fields.json").read_text())["grid"] == [8, 8]
    assert json.loads((tmp_path / "summary.json").read_text())["grid"] == [8, 8]
