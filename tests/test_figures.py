"""Figure functions and the figure-writing commands, on tiny models built in the test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from patchfield.cli import main


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny timm ViT (test_vit at 64 px: a 4x4 grid, 6 layers) saved as safetensors."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=3)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    paths = []
    for name, size in (("a", (80, 64)), ("b", (64, 96))):
        p = folder / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    bad = folder / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return paths, bad


def test_analyze_writes_json_and_basic_figures(weights, image_files, tmp_path, capsys):
    (a, b), bad = image_files
    out = tmp_path / "out"
    code = main(["analyze", str(a), str(bad), str(b), "--model", "test_vit", "--weights", str(weights),
                 "--image-size", "64", "--alpha", "0.1", "--beta", "0.25", "--out", str(out)])
    assert code == 1
    assert "corrupt.png" in capsys.readouterr().err
    assert not (out / "corrupt").exists()
    for name in ("a", "b"):
        record = json.loads((out / name / "fields.json").read_text())
        assert record["grid"] == [4, 4]
        assert set(record["figures"]) == {"uncertainty", "windows", "dip", "field_size", "tendency"}
        for file in record["figures"].values():
            with Image.open(out / name / file) as im:
                assert im.format == "PNG" and im.width > 100 and im.height > 100
        leftovers = [p.name for p in (out / name).iterdir() if p.name.startswith(".")]
        assert leftovers == []
