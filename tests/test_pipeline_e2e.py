"""End to end on the embedded synthetic data set, on the CPU: ViT -> ground truth -> AWD, AWD+DIP, WinfT.

Every step goes through the command line (``patchfield train / groundtruth / evaluate``) in this
process. A tiny ViT (32x32 images, 8x8 patches: a 4x4 grid, N^2 = 256) trains with the paper's
SGD recipe (lr 0.01, momentum 0.9, warm-up then cosine); its fields at alpha 0.1, beta 0.25 form
the ground truth; the window models then train briefly from the same starting weights (the same
seed), and one AWD+DIP model is fine-tuned from the trained ViT.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import single_thread

from patchfield.cli import main
from patchfield.groundtruth import GroundTruthStore

TINY = '{"patch_size": 8, "embed_dim": 64, "depth": 3, "num_heads": 4, "mlp_ratio": 2.0, "img_size": 32}'
COMMON = ["--model", "vit_tiny_patch16_224", "--model-kwargs", TINY, "--no-progress"]
TRAIN = ["--data-kwargs", '{"num_images": 2048}']
VAL = ["--data-kwargs", '{"num_images": 256}', "--split", "val"]
N2 = 16 * 16
CHANCE = 0.25  # 4 balanced classes


def _run(*args: str) -> None:
    code = main(list(args))
    assert code == 0, f"patchfield {' '.join(args[:1])} exited with {code}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    with single_thread():  # two threads on the 2 shared cores are many times slower
        _run("train", *COMMON, *TRAIN, "--steps", "300", "--batch-size", "32", "--warmup-steps", "20",
             "--lr", "0.01", "--log-every", "50", "--out", str(d / "vit"))
        _run("evaluate", str(d / "vit"), *VAL, "--out", str(d / "vit.json"), "--no-progress")
        weights = str(d / "vit" / "model.safetensors")
        for split, data in (("train", TRAIN), ("val", VAL)):
            _run("groundtruth", *COMMON, "--weights", weights, "--data", "synthetic", *data, "--split", split,
                 "--alpha", "0.1", "--beta", "0.25", "--out", str(d / f"gt_{split}"))
        runs = {kind: [] for kind in ("awd", "awd-dip", "winft-paper", "winft-restrict")}
        runs["awd-dip-finetuned"] = ["--weights", weights]
        for name, extra in runs.items():
            kind = name.replace("-finetuned", "")
            _run("train", *COMMON, *TRAIN, *extra, "--kind", kind, "--groundtruth", str(d / "gt_train"),
                 "--steps", "60", "--batch-size", "32", "--warmup-steps", "5", "--lr", "0.01", "--log-every", "20",
                 "--out", str(d / name))
            gt = ["--groundtruth", str(d / "gt_val")] if kind.startswith("awd") else []
            _run("evaluate", str(d / name), *VAL, *gt, "--out", str(d / f"{name}.json"), "--no-progress")
    return d


def _json(path):
    return json.loads(path.read_text())


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_files_present_and_valid(pipeline):
    for name in ("vit", "awd", "awd-dip", "winft-paper", "winft-restrict", "awd-dip-finetuned"):
        run = pipeline / name
        for f in ("model.safetensors", "checkpoint.pt", "run.json", "log.jsonl"):
            assert (run / f).is_file(), f"{name}/{f}"
        info = _json(run / "run.json")
        assert info["kind"] == name.replace("-finetuned", "") and info["grid"] == [4, 4]
        if name != "vit":
            gt = info["groundtruth"]
            assert (gt["alpha"], gt["beta"]) == (0.1, 0.25) and gt["model_accuracy"] > CHANCE + 0.1
            # E_O of what the model attends with: the windows alone for awd, S_p for the others
            store = GroundTruthStore(pipeline / "gt_train")
            assert gt["expected_interactions"] == pytest.approx(store.expected_interactions(dip=info["kind"] != "awd"))
        assert info["steps"] == (300 if name == "vit" else 60)
        result = _json(pipeline / f"{name}.json")
        assert result["num_images"] == 256 and result["eo_full"] == N2 and result["kind"] == info["kind"]
        lines = _log(run)
        assert lines[-1]["step"] == info["steps"]
        assert all(np.isfinite([ln["loss"], ln["ce"], ln["bce"], ln["eo"]]).all() for ln in lines)
    for split, n in (("train", 2048), ("val", 256)):
        assert (pipeline / f"gt_{split}" / "manifest.json").is_file()
        assert len(GroundTruthStore(pipeline / f"gt_{split}")) == n


def test_vit_learns(pipeline):
    result = _json(pipeline / "vit.json")
    # 256 images at chance would give 0.25 +- 0.027: 0.35 is 3.7 standard deviations above
    assert result["top1"] > CHANCE + 0.1
    assert result["eo"] == N2 and result["top5"] == 1.0 and result["top5_k"] == 4
    lines = _log(pipeline / "vit")
    assert lines[-1]["loss"] < lines[0]["loss"] and lines[-1]["accuracy"] > CHANCE + 0.05


def test_awd_interactions_are_the_stores(pipeline):
    val = GroundTruthStore(pipeline / "gt_val")
    awd, dip = _json(pipeline / "awd.json"), _json(pipeline / "awd-dip.json")
    # AWD attends inside the windows: E_O is their O (docs/spec.md §3); AWD+DIP inside S_p: sum |S_p| (§5)
    assert awd["eo"] == pytest.approx(float(val.window_interactions.mean()), abs=1e-9)
    assert dip["eo"] == pytest.approx(float(val.interactions.mean()), abs=1e-9)
    assert 16 <= dip["eo"] < awd["eo"] < N2
    for name in ("awd", "awd-dip"):
        assert all(16 <= ln["eo"] < N2 for ln in _log(pipeline / name))


def test_finetuned_awd_dip_keeps_accuracy(pipeline):
    result = _json(pipeline / "awd-dip-finetuned.json")
    assert result["top1"] > CHANCE + 0.08
    assert result["eo"] == pytest.approx(_json(pipeline / "awd-dip.json")["eo"], abs=1e-9)


def test_winft_predicts_windows(pipeline):
    for name in ("winft-paper", "winft-restrict"):
        result = _json(pipeline / f"{name}.json")
        assert 16 <= result["eo"] < N2  # W keeps fewer than all N^2 pairs
        lines = _log(pipeline / name)
        assert all(ln["bce"] > 0 for ln in lines)
        assert lines[-1]["bce"] < lines[0]["bce"]  # it learns the ground-truth windows
        assert lines[-1]["loss"] == pytest.approx(lines[-1]["ce"] + lines[-1]["bce"], rel=1e-6)


def test_store_mismatch_errors(pipeline, capsys):
    d = pipeline

    def fails(*args):
        assert main(list(args)) == 2
        return capsys.readouterr().err

    base = ["train", *COMMON, "--steps", "2", "--warmup-steps", "1", "--batch-size", "8", "--kind", "awd"]
    # the training store with the validation images: lengths differ
    err = fails(*base, *VAL, "--groundtruth", str(d / "gt_train"), "--out", str(d / "e1"))
    assert "2048 images" in err and "256" in err
    # same length, other images (another seed): fingerprints differ
    err = fails(*base, "--data-kwargs", '{"num_images": 2048, "seed": 7}', "--groundtruth", str(d / "gt_train"),
                "--out", str(d / "e2"))
    assert "fingerprint" in err
    # a model with another patch grid
    other = TINY.replace('"patch_size": 8', '"patch_size": 4')
    err = fails("train", "--model", "vit_tiny_patch16_224", "--model-kwargs", other, "--no-progress", "--steps", "2",
                "--warmup-steps", "1", "--kind", "awd-dip", *TRAIN, "--groundtruth", str(d / "gt_train"),
                "--out", str(d / "e3"))
    assert "4x4" in err and "8x8" in err
    # no store, or a missing one
    assert "--groundtruth" in fails(*base, *TRAIN, "--out", str(d / "e4"))
    assert "no ground-truth store" in fails(*base, *TRAIN, "--groundtruth", str(d / "nowhere"), "--out", str(d / "e5"))
    # evaluating an AWD model needs the store of the evaluated images
    assert "--groundtruth" in fails("evaluate", str(d / "awd"), *VAL, "--no-progress")
    assert not any((d / f"e{i}").exists() and any((d / f"e{i}").iterdir()) for i in range(1, 6))
