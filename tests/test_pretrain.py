"""The pretrained start: the generated radial-contour source, `patchfield pretrain`, and the fine-tune path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from patchfield.cli import main
from patchfield.data import FormulaContours, build_dataset
from patchfield.data.formula import polygon_radius
from patchfield.loading import load_run
from patchfield.training import build_model
from patchfield.training.pretrain import (
    MODEL,
    QUICK,
    TINY_VIT,
    PretrainConfig,
    check_pretrained,
    find_pretrained,
    pretrained_model_kwargs,
    pretrained_weights,
)

# ------------------------------------------------------------------------------------------- the source


def _ray_polygon_loop(theta: float, radii: list[float]) -> float:
    """Distance from the origin to the polygon along ``theta``: a plain float64 ray-edge intersection loop."""
    n = len(radii)
    pts = [(radii[k] * math.cos(2 * math.pi * k / n), radii[k] * math.sin(2 * math.pi * k / n)) for k in range(n)]
    d = (math.cos(theta), math.sin(theta))
    for k in range(n):
        (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % n]
        ex, ey = x1 - x0, y1 - y0
        det = d[0] * (-ey) - d[1] * (-ex)  # solve t·d = p0 + s·e for (t, s)
        if abs(det) < 1e-15:
            continue
        t = (x0 * (-ey) - y0 * (-ex)) / det
        s = (d[0] * y0 - d[1] * x0) / det
        if t > 0 and -1e-12 <= s <= 1 + 1e-12:
            return t
    raise AssertionError("the ray hits no edge")


def test_polygon_radius_matches_a_float64_loop():
    g = np.random.default_rng(3)
    counts = [3, 4, 7, 12]
    radii = torch.tensor(1 + 0.35 * g.uniform(-1, 1, (len(counts), 12)), dtype=torch.float64)
    theta = torch.tensor(g.uniform(-7, 7, (len(counts), 5, 6)), dtype=torch.float64)
    got = polygon_radius(theta, radii, torch.tensor(counts))
    want = torch.tensor([[[_ray_polygon_loop(float(theta[b, i, j]), radii[b, :counts[b]].tolist())
                           for j in range(6)] for i in range(5)] for b in range(len(counts))], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)


def test_polygon_radius_hand_values():
    th = torch.tensor([[[math.pi / 6, math.pi / 3, 0.0]]], dtype=torch.float64)
    hexagon = polygon_radius(th, torch.ones(1, 6, dtype=torch.float64), torch.tensor([6]))
    # mid-edge of the unit regular hexagon: its apothem cos(π/6); on vertices: 1
    torch.testing.assert_close(hexagon, torch.tensor([[[math.sqrt(3) / 2, 1.0, 1.0]]], dtype=torch.float64))
    # triangle with vertex radii 1, 2, 2 at 0°, 120°, 240°: at 180° the edge between (-1, √3) and (-1, -√3), x = -1
    tri = polygon_radius(torch.tensor([[[math.pi]]], dtype=torch.float64),
                         torch.tensor([[1.0, 2.0, 2.0]], dtype=torch.float64), torch.tensor([3]))
    assert tri.item() == pytest.approx(1.0, abs=1e-12)


def test_formula_images_are_fixed_by_seed_split_and_index():
    ds = FormulaContours(300, image_size=32)
    idx = [0, 7, 123, 299]
    x, y = ds.batch(idx)
    one = torch.stack([ds[i][0] for i in idx])
    torch.testing.assert_close(x, one, rtol=0, atol=0)
    assert y.tolist() == [0, 7, 23, 99] and ds.targets[123] == 23 and ds.label(299) == 99
    again = FormulaContours(300, image_size=32).render(idx)[0]
    assert np.array_equal(again, ds.render(idx)[0])
    other_split = FormulaContours(300, image_size=32, split="val").render(idx)[0]
    assert not np.array_equal(other_split, again)
    # the classes are shared by the splits; another seed defines other classes
    val = FormulaContours(10, split="val")
    torch.testing.assert_close(val._radii, ds._radii, rtol=0, atol=0)
    assert not torch.equal(FormulaContours(10, seed=1)._radii, ds._radii)
    assert [ds.vertices(c) for c in (0, 9, 10, 15)] == [3, 12, 3, 8]
    assert ds.fingerprint() != FormulaContours(300, image_size=32, split="val").fingerprint()


def test_formula_normalisation_colours_and_sizes():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ds = FormulaContours(64, image_size=32, mean=mean, std=std)
    raw, _ = ds.render(range(64))
    x, _ = ds.batch(range(64))
    want = (torch.from_numpy(raw).permute(0, 3, 1, 2).double() / 255 - torch.tensor(mean)[:, None, None].double()) \
        / torch.tensor(std)[:, None, None].double()
    torch.testing.assert_close(x.double(), want, rtol=0, atol=1e-6)
    # dark background (<= 0.35 per channel), bright lines (>= 0.75): the brightest pixel of an image is a line's
    low = raw.reshape(64, -1, 3).min(1)
    high = raw.reshape(64, -1, 3).max(1)
    assert (low <= round(0.35 * 255)).all() and (high.max(1) >= round(0.75 * 255)).all()
    ink = (raw.max(-1) > 0.6 * 255).mean((1, 2))  # the share of line pixels
    assert 0.02 < ink.min() and ink.max() < 0.6
    for size in (16, 48):
        assert FormulaContours(3, image_size=size)[2][0].shape == (3, size, size)
    with pytest.raises(ValueError, match="at least 16"):
        FormulaContours(3, image_size=8)
    with pytest.raises(ValueError, match="num_classes"):
        FormulaContours(3, num_classes=1)


def test_registry_builds_the_formula_source():
    ds = build_dataset("formula", "val", 32, num_images=5, num_classes=7)
    assert isinstance(ds, FormulaContours) and len(ds) == 5 and ds.num_classes == 7 and ds.split == "val"
    assert len(build_dataset("formula", "train", 16)) == 100_000
    with pytest.raises(ValueError, match="takes no root"):
        build_dataset("formula", "val", 32, root="/tmp")


# ------------------------------------------------------------------------------------------ pretraining


def test_pretrained_vit_is_the_studys_tiny_vit():
    from patchfield.study.reproduce import StudyConfig

    study, pre = StudyConfig(), PretrainConfig()  # the study takes its architecture from the pretrained runs
    assert TINY_VIT == {"embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}
    assert pre.image_size == 32 and set(pre.patches) == set(study.patch_sizes)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> Path:
    """``patchfield pretrain --quick`` once for the module (both patch sizes, seconds)."""
    root = tmp_path_factory.mktemp("pretrained")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["pretrain", "--quick", "--out", str(root), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(before)
    return root


def test_quick_pretraining_writes_recorded_checkpoints(quick_runs: Path, one_thread):
    assert [p.name for p in find_pretrained(quick_runs)] == ["formula-p4", "formula-p8"]
    for patch in (4, 8):
        folder = quick_runs / f"formula-p{patch}"
        info = json.loads((folder / "run.json").read_text())
        assert info["name"] == f"formula-p{patch}" and info["patch"] == patch and info["source"] == "formula"
        assert info["steps"] == QUICK.steps and info["images"] == QUICK.steps * QUICK.batch_size
        assert info["seed"] == 0 and info["train_seconds"] > 0 and 0.0 <= info["source_top1"] <= 1.0
        assert info["source_eval"]["split"] == "val" and info["source_eval"]["num_images"] == QUICK.eval_images
        assert not (folder / "checkpoint.pt").exists()
        assert len((folder / "log.jsonl").read_text().splitlines()) == QUICK.steps
        model, _ = load_run(folder)
        assert model.patch_embed.patch_size == (patch, patch) and model.num_classes == QUICK.num_classes
        assert pretrained_weights(patch, quick_runs) == folder / "model.safetensors"
        # re-measured on the same held-out images: exactly the recorded values
        full = check_pretrained(folder, QUICK.eval_images)
        assert full["measured"] == pytest.approx(info["source_top1"], abs=1e-12) and full["ok"]
        assert full["tolerance"] == pytest.approx(0.01) and full["recorded_same_images"] is None
        first = check_pretrained(folder)  # the recorded check_images
        assert first["num_images"] == QUICK.check_images == info["source_eval"]["check_images"] and first["ok"]
        assert first["measured"] == pytest.approx(info["source_eval"]["check_top1"], abs=1e-12)
        assert first["recorded_same_images"] == info["source_eval"]["check_top1"]
        p = info["source_top1"]
        assert first["tolerance"] == pytest.approx(4 * math.sqrt(p * (1 - p) * (1 / 32 - 1 / 64)) + 0.01)
    with pytest.raises(FileNotFoundError, match="make pretrain"):
        pretrained_weights(16, quick_runs)


def test_source_check_fails_on_a_wrong_record(quick_runs: Path, tmp_path: Path, one_thread):
    import shutil

    folder = tmp_path / "formula-p4"
    shutil.copytree(quick_runs / "formula-p4", folder)
    good = json.loads((folder / "run.json").read_text())
    assert check_pretrained(folder)["ok"]
    wrong_all = {**good, "source_top1": (good["source_top1"] + 0.5) % 1.0}
    (folder / "run.json").write_text(json.dumps(wrong_all))
    assert not check_pretrained(folder)["ok"]
    # 2 of the 32 check images off: within the sampling tolerance of source_top1, not the same-image one
    ev = good["source_eval"]
    shifted = ev["check_top1"] + (2 / 32 if ev["check_top1"] < 0.5 else -2 / 32)
    (folder / "run.json").write_text(json.dumps({**good, "source_eval": {**ev, "check_top1": shifted}}))
    result = check_pretrained(folder)
    assert abs(result["measured"] - result["recorded"]) <= result["tolerance"] and not result["ok"]


def test_finished_pretraining_is_skipped_and_guarded(quick_runs: Path, one_thread, capsys):
    run_file = quick_runs / "formula-p8" / "run.json"
    before = run_file.stat().st_mtime_ns
    assert main(["pretrain", "--quick", "--out", str(quick_runs), "--patch", "8", "--no-progress"]) == 0
    assert run_file.stat().st_mtime_ns == before
    assert "formula-p8: source top-1" in capsys.readouterr().out
    assert main(["pretrain", "--quick", "--out", str(quick_runs), "--patch", "8", "--steps", "5"]) == 2
    assert "remove the folder" in capsys.readouterr().err


def test_killed_pretraining_resumes_to_the_uninterrupted_weights(quick_runs: Path, tmp_path: Path, one_thread,
                                                                 capsys):
    args = ["pretrain", "--quick", "--out", str(tmp_path), "--patch", "8", "--no-progress"]
    assert main([*args, "--stop-after-steps", "2"]) == 0
    assert "stopped at step 2" in capsys.readouterr().out
    assert (tmp_path / "formula-p8" / "checkpoint.pt").is_file() and not find_pretrained(tmp_path)
    assert main(args) == 0
    resumed = load_file(str(tmp_path / "formula-p8" / "model.safetensors"))
    straight = load_file(str(quick_runs / "formula-p8" / "model.safetensors"))
    assert resumed.keys() == straight.keys()
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=0)
    info = json.loads((tmp_path / "formula-p8" / "run.json").read_text())
    assert info["steps"] == QUICK.steps and len((tmp_path / "formula-p8" / "log.jsonl").read_text().splitlines()) == 4


def test_fine_tune_starts_from_the_pretrained_weights(quick_runs: Path, tmp_path: Path, one_thread, caplog):
    weights = pretrained_weights(8, quick_runs)
    kwargs = pretrained_model_kwargs(QUICK, 8)
    start = build_model(MODEL, "vit", num_classes=4, image_size=32, weights=weights, model_kwargs=kwargs)
    source = load_file(str(weights))
    own = start.state_dict()
    assert own["head.weight"].shape == (4, 64) and source["head.weight"].shape == (QUICK.num_classes, 64)
    for k, v in source.items():
        if not k.startswith("head."):
            torch.testing.assert_close(own[k], v, rtol=0, atol=0)
    out = tmp_path / "ft"
    rc = main(["train", "--model", MODEL, "--model-kwargs", json.dumps(kwargs), "--weights", str(weights),
               "--data", "synthetic", "--data-kwargs", '{"num_images": 32}', "--steps", "1", "--batch-size", "16",
               "--optimizer", "adamw", "--lr", "1e-9", "--warmup-steps", "0", "--out", str(out), "--no-progress"])
    assert rc == 0 and "training a new head" in caplog.text
    tuned, info = load_run(out)
    assert info["num_classes"] == 4
    for k, v in source.items():
        if not k.startswith("head."):
            torch.testing.assert_close(tuned.state_dict()[k], v, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------- shipped checkpoints

_NONE_SHIPPED = "no shipped pretrained checkpoints yet: run `make pretrain`"
_SHIPPED = [pytest.param(p, id=p.name) for p in find_pretrained()] or [
    pytest.param(None, id="none", marks=pytest.mark.skip(reason=_NONE_SHIPPED))
]


@pytest.mark.parametrize("folder", _SHIPPED)
def test_shipped_checkpoints_reach_their_recorded_source_accuracy(folder: Path, one_thread):
    """The first held-out source images (300 in the committed run): within 1 point of the top-1 recorded on
    them, and within 4 sampling SDs + 1 point of the top-1 recorded on all held-out images (check_pretrained)."""
    info = json.loads((folder / "run.json").read_text())
    assert {"name", "patch", "source", "source_top1", "train_seconds", "steps", "images", "seed"} <= info.keys()
    assert info["name"] == folder.name and info["model_kwargs"]["patch_size"] == info["patch"]
    result = check_pretrained(folder)
    assert result["num_images"] == info["source_eval"]["check_images"]
    assert result["recorded_same_images"] is not None
    assert result["ok"], (f"{folder.name}: measured {result['measured']:.3f} on {result['num_images']} held-out "
                          f"images; recorded {result['recorded_same_images']:.3f} on them, {result['recorded']:.3f} "
                          "on all "
                          f"(tolerance {result['tolerance']:.3f})")
