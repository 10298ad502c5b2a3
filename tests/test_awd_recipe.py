"""The README's AWD recipe end to end, with the run folders ``patchfield train`` itself writes: a ViT, its
ground-truth store, ``train --kind awd`` and ``awd-dip`` on it, then ``analyze`` and ``explore`` with ``--baseline``
(run.json's ``groundtruth`` is the record ``train`` writes, not a path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import single_thread
from PIL import Image

from patchfield import analyze, awd_forward_kwargs, load_model
from patchfield.cli import main
from patchfield.images import read_image
from patchfield.preprocess import Preprocess

TINY = {"patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 16}
DATA = ["--data", "synthetic", "--data-kwargs", '{"num_images": 16}']
ALPHA, BETA = 0.2, 0.25  # the store's rates


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> dict[str, Path]:
    """`train --kind vit`, `groundtruth` from that run, `train --kind awd` and `awd-dip` on the store; a photo."""
    root = tmp_path_factory.mktemp("recipe")
    train = ["train", "--model", "vit_tiny_patch16_224", "--model-kwargs", json.dumps(TINY), *DATA, "--steps", "2",
             "--warmup-steps", "1", "--batch-size", "8", "--no-progress"]
    with single_thread():
        assert main([*train, "--kind", "vit", "--out", str(root / "vit")]) == 0
        assert main(["groundtruth", "--model", str(root / "vit"), *DATA, "--alpha", str(ALPHA), "--beta", str(BETA),
                     "--out", str(root / "gt"), "--no-progress"]) == 0
        for kind in ("awd", "awd-dip"):
            assert main([*train, "--kind", kind, "--groundtruth", str(root / "gt"), "--out", str(root / kind)]) == 0
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "photo.png")
    return {"root": root, "vit": root / "vit", "gt": root / "gt", "awd": root / "awd", "awd-dip": root / "awd-dip",
            "photo": root / "photo.png"}


def _expected(recipe: dict[str, Path], kind: str, alpha: float, beta: float) -> dict:
    """fields.json of the photo (less its path) computed with the library, the AWD-ViT within its baseline's
    fields at the store's rates."""
    model, baseline = load_model(str(recipe[kind])), load_model(str(recipe["vit"]))
    x = Preprocess.for_model(model)(read_image(recipe["photo"]))[0][None]
    result = analyze(model, x, alpha, beta, forward_kwargs=awd_forward_kwargs(baseline, x, ALPHA, BETA, kind))
    return json.loads(json.dumps(result.to_json(0)))


@pytest.mark.parametrize("kind", ["awd", "awd-dip"])
def test_train_then_analyze_and_explore_an_awd_run(recipe, kind, tmp_path, capsys, one_thread):
    info = json.loads((recipe[kind] / "run.json").read_text())
    assert info["groundtruth"]["alpha"] == ALPHA and info["groundtruth"]["beta"] == BETA  # a record, not a path
    out = tmp_path / "an"
    assert main(["analyze", str(recipe["photo"]), "--model", str(recipe[kind]), "--baseline", str(recipe["vit"]),
                 "--alpha", "0.3", "--beta", "0.1", "--no-figures", "--out", str(out)]) == 0
    got = json.loads((out / "photo" / "fields.json").read_text())
    got.pop("image")
    assert got == _expected(recipe, kind, 0.3, 0.1)
    assert "not the ViT" not in capsys.readouterr().err  # the store's own baseline: no warning
    page = tmp_path / "page.html"
    assert main(["explore", str(recipe["photo"]), "--model", str(recipe[kind]), "--baseline", str(recipe["vit"]),
                 "--out", str(page)]) == 0
    assert page.stat().st_size > 1000


def test_the_store_gone_run_json_gives_the_rates(recipe, tmp_path, one_thread):
    """Without its store an AWD run folder still has the rates `train` recorded in run.json."""
    copy = tmp_path / "awd-dip"
    shutil.copytree(recipe["awd-dip"], copy)
    info = json.loads((copy / "run.json").read_text())
    info["groundtruth"]["path"] = str(tmp_path / "moved")
    (copy / "run.json").write_text(json.dumps(info))
    out = tmp_path / "an"
    assert main(["analyze", str(recipe["photo"]), "--model", str(copy), "--baseline", str(recipe["vit"]),
                 "--no-figures", "--out", str(out)]) == 0
    got = json.loads((out / "photo" / "fields.json").read_text())
    got.pop("image")
    assert got == _expected(recipe, "awd-dip", 0.1, 0.2)
    assert got["alpha"] == 0.1 and got["beta"] == 0.2  # the analysis at the defaults, the fields at the store's
