"""The preprocessing rule: one path (patchfield.preprocess.Preprocess) for every command and data set, masks too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_hf_vit, tiny_vit
from PIL import Image

import patchfield as pf
from patchfield.cli import main
from patchfield.data import build_dataset
from patchfield.images import read_image
from patchfield.preprocess import Preprocess, model_data_config
from patchfield.training.sources import model_normalisation


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_for_model_reads_the_models_data_config():
    model = tiny_vit()
    model.pretrained_cfg = {"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6),
                            "crop_pct": 0.8, "interpolation": "bilinear"}
    p = Preprocess.for_model(model)
    assert p.size == (32, 32) and p.crop_pct == pytest.approx(0.8) and p.interpolation == "bilinear"
    assert p.data_kwargs() == {"mean": pytest.approx((0.1, 0.2, 0.3)), "std": pytest.approx((0.4, 0.5, 0.6)),
                               "crop_pct": pytest.approx(0.8), "interpolation": "bilinear"}
    assert Preprocess.for_model(model, size=48).size == (48, 48)
    hf = model_data_config(tiny_hf_vit())
    assert (hf["size"], hf["mean"], hf["crop_pct"], hf["interpolation"]) == ((32, 32), (0.5,) * 3, 1.0, "bilinear")


def test_centre_crop_by_hand():
    # 40x80 photo to 20x20 at crop_pct 0.5: the short side goes to 40, i.e. no scaling; centre 20x20 crop
    photo = _photo(40, 80)
    x, crop = Preprocess((20, 20), (0, 0, 0), (1, 1, 1), crop_pct=0.5, interpolation="nearest")(Image.fromarray(photo))
    np.testing.assert_array_equal(crop, photo[10:30, 30:50])
    torch.testing.assert_close(x, torch.from_numpy(photo[10:30, 30:50]).permute(2, 0, 1).float() / 255)


def test_same_photo_same_tensor_through_analyze_and_a_folder_data_set(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=32, num_classes=3).eval()  # crop_pct 0.95, mean/std 0.5
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    (tmp_path / "data" / "cat").mkdir(parents=True)
    path = tmp_path / "data" / "cat" / "photo.png"
    Image.fromarray(_photo(45, 70, seed=3)).save(path)

    ds = build_dataset("imagefolder", "val", 32, root=tmp_path / "data", **model_normalisation(model))
    x_data = ds[0][0]
    x_cmd, _ = Preprocess.for_model(model)(read_image(path))
    assert torch.equal(x_data, x_cmd)

    out = tmp_path / "out"
    assert main(["analyze", str(path), "--model", "test_vit", "--weights", str(tmp_path / "w.safetensors"),
                 "--image-size", "32", "--alpha", "0.2", "--beta", "0.1", "--out", str(out)]) == 0
    record = json.loads((out / "photo" / "fields.json").read_text())
    expected = pf.analyze(model, x_data[None], 0.2, 0.1).to_json(0)
    assert record["windows"] == expected["windows"]
    np.testing.assert_allclose(record["column_variance"], expected["column_variance"], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("crop_pct, interpolation", [(0.875, "bicubic"), (0.95, "bilinear"), (1.0, "bicubic")])
def test_mask_and_photo_crops_align(crop_pct, interpolation):
    h, w = 53, 91  # neither a multiple of the output
    photo = np.zeros((h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    mask[10:40, 30:75] = True
    photo[mask] = 255
    p = Preprocess((24, 24), (0, 0, 0), (1, 1, 1), crop_pct=crop_pct, interpolation=interpolation)
    _, crop = p(Image.fromarray(photo))
    for given in (Image.fromarray(mask.astype(np.uint8) * 255), mask, torch.from_numpy(mask)):
        m = p.mask(given).numpy()
        assert m.shape == (24, 24) and m.dtype == bool
        sharp = (crop[..., 0] < 20) | (crop[..., 0] > 235)  # pixels away from the interpolated edge
        assert sharp.mean() > 0.7
        np.testing.assert_array_equal(m[sharp], crop[..., 0][sharp] > 127)
    with pytest.raises(ValueError, match="must be \\[H, W\\]"):
        p.mask(np.zeros((2, 3, 4)))
