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


# -- the ecosystem's pipelines, exactly ------------------------------------------------------------

def _timm_reference(model, size=None):
    """``timm.data.create_transform(**resolve_data_config(model=model))`` at the model's (or the given) size."""
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config(model=model)
    h, w = model.patch_embed.img_size if size is None else size
    return create_transform(**{**cfg, "input_size": (3, h, w)})


def _pixels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)


def test_equals_timm_create_transform_on_every_square_size_and_random_shapes():
    # every square size 100..1200 px (55 of them crashed at crop_pct 1.0) and 50 random shapes, for a crop_pct
    # 1.0 and a 0.875 model, at a small input size so the check stays fast (~15 s of CPU); then the random shapes
    # at a non-square input size (timm's ResizeKeepRatio) and in timm's squash mode
    pixels = _pixels()
    rng = np.random.default_rng(1)
    squares = [(s, s) for s in range(100, 1201)]
    shapes = [tuple(int(v) for v in rng.integers(1, 1201, 2)) for _ in range(50)]

    def pipelines(crop_pct, interpolation, mode, size=None):
        model = tiny_vit()
        model.pretrained_cfg = {"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6), "crop_pct": crop_pct,
                                "interpolation": interpolation, "crop_mode": mode}
        return Preprocess.for_model(model, size=size), _timm_reference(model, size)

    both = [pipelines(1.0, "bicubic", "center"), pipelines(0.875, "bilinear", "center")]
    more = [pipelines(0.9, "bicubic", "squash"), pipelines(0.875, "bicubic", "center", (24, 40))]
    worst = 0.0
    for k, (h, w) in enumerate(squares + shapes):
        photo = Image.fromarray(pixels[:h, :w])
        for ours, ref in both + (more if k >= len(squares) else []):
            worst = max(worst, float((ours(photo)[0] - ref(photo)).abs().max()))
    assert worst <= 1e-6


def test_square_photos_at_crop_pct_one_and_the_models_full_size():
    # the crash: a square photo, crop_pct 1.0, 224 input ("box offset can't be negative")
    model = tiny_vit(img_size=224, patch_size=16)
    model.pretrained_cfg = {"crop_pct": 1.0, "interpolation": "bicubic"}
    ours, ref = Preprocess.for_model(model), _timm_reference(model)
    pixels = _pixels(2)
    for s in (103, 333, 500, 999):  # sizes that failed before
        photo = Image.fromarray(pixels[:s, :s])
        x, crop = ours(photo)
        assert x.shape == (3, 224, 224) and crop.shape == (224, 224, 3)
        assert float((x - ref(photo)).abs().max()) <= 1e-6


def test_masks_go_through_the_same_geometry_nearest():
    from timm.data import create_transform

    model = tiny_vit()
    model.pretrained_cfg = {"crop_pct": 0.875, "interpolation": "bicubic"}
    p = Preprocess.for_model(model)
    for h, w in ((333, 500), (500, 333), (101, 101), (7, 3)):
        mask = np.zeros((h, w), dtype=bool)
        mask[h // 5: 3 * h // 4, w // 3: w - 1] = True
        ref = create_transform(input_size=(3, 32, 32), interpolation="nearest", crop_pct=0.875,
                               mean=(0,), std=(1,))(Image.fromarray(mask.astype(np.uint8) * 255))
        np.testing.assert_array_equal(p.mask(mask).numpy(), ref[0].numpy() > 0.5)


def test_torchvision_weights_settings_and_overrides():
    from torchvision.transforms._presets import ImageClassification  # what torchvision weights' transforms() are

    model = tiny_vit()
    # torchvision weights' transforms(): resize 256 (short side), crop 224, bilinear, ImageNet mean/std
    p = Preprocess.for_model(model, size=224, resize_size=256, interpolation="bilinear",
                             mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ref = ImageClassification(crop_size=224, resize_size=256)
    pixels = _pixels(3)
    for h, w in ((300, 451), (256, 256), (225, 224)):
        photo = Image.fromarray(pixels[:h, :w])
        assert float((p(photo)[0] - ref(photo)).abs().max()) <= 1e-6
    assert p.data_kwargs()["pipeline"] is p  # data sets get the whole pipeline

    assert "pipeline" not in Preprocess.for_model(model).data_kwargs()
    q = Preprocess.for_model(model, crop_pct=1.0, interpolation="nearest", mean=(0, 0, 0), std=(1, 1, 1))
    assert (q.crop_pct, q.interpolation, q.size) == (1.0, "nearest", (32, 32))
    with pytest.raises(ValueError, match="crop_pct must be in"):
        Preprocess.for_model(model, crop_pct=1.5)
    with pytest.raises(ValueError, match="unknown interpolation"):
        Preprocess.for_model(model, interpolation="cubic")


def _save_processors(root):
    from transformers import BitImageProcessor, CLIPImageProcessor, SiglipImageProcessor, ViTImageProcessor

    folders = {}
    for cls, kw in [
        (ViTImageProcessor, dict(size={"height": 32, "width": 32})),
        (BitImageProcessor, dict(size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32},
                                 image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))),
        (CLIPImageProcessor, dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
        (SiglipImageProcessor, dict(size={"height": 32, "width": 32})),
    ]:
        folders[cls.__name__] = root / cls.__name__
        cls(**kw).save_pretrained(folders[cls.__name__])
    return folders


def test_hugging_face_folders_get_their_image_processor(tmp_path):
    from transformers import AutoImageProcessor

    from patchfield.loading import load_model
    from patchfield.preprocess import ProcessorPreprocess

    folders = _save_processors(tmp_path)
    hf = tiny_hf_vit()
    hf.save_pretrained(folders["BitImageProcessor"])
    model = load_model(str(folders["BitImageProcessor"]))
    assert isinstance(Preprocess.for_model(model), ProcessorPreprocess)
    assert not isinstance(Preprocess.for_model(tiny_hf_vit()), ProcessorPreprocess)  # no folder: the default
    pixels = _pixels(4)
    rng = np.random.default_rng(5)
    shapes = [(333, 500), (500, 333), (101, 101), (64, 64), (3, 7)] + [tuple(rng.integers(8, 400, 2)) for _ in range(5)]
    for name, folder in folders.items():
        ours, ref = ProcessorPreprocess.from_folder(folder), AutoImageProcessor.from_pretrained(folder)
        assert ours.size == (32, 32)
        for h, w in shapes:
            photo = Image.fromarray(pixels[:h, :w])
            x, crop = ours(photo)
            expected = ref(images=photo, return_tensors="pt")["pixel_values"][0]
            assert float((x - expected).abs().max()) <= 1e-6, (name, h, w)
            assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
            m = ours.mask(pixels[:h, :w, 0] > 127).numpy()
            assert m.shape == (32, 32) and m.dtype == bool
        block = np.zeros((90, 150), dtype=bool)
        block[20:70, 40:120] = True
        photo = Image.fromarray(np.where(block[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2))
        _, crop = ours(photo)
        m = ours.mask(block).numpy()
        sharp = (crop[..., 0] < 20) | (crop[..., 0] > 235)
        np.testing.assert_array_equal(m[sharp], crop[..., 0][sharp] > 127)
    bit = ProcessorPreprocess.from_folder(folders["BitImageProcessor"], size=48, interpolation="bilinear")
    assert bit.size == (48, 48) and bit.interpolation == "bilinear"
    with pytest.raises(ValueError, match="preprocessor_config.json says how"):
        ProcessorPreprocess.from_folder(folders["ViTImageProcessor"], crop_pct=0.9)


def test_analyze_on_a_hugging_face_folder_uses_its_processor(tmp_path):
    from transformers import AutoImageProcessor, BitImageProcessor

    from patchfield.loading import load_model

    folder = tmp_path / "dinov2_like"
    tiny_hf_vit().save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo(45, 70, seed=3)).save(photo)
    out = tmp_path / "out"
    assert main(["analyze", str(photo), "--model", str(folder), "--alpha", "0.2", "--beta", "0.1", "--no-figures",
                 "--out", str(out)]) == 0
    x = AutoImageProcessor.from_pretrained(folder)(images=Image.open(photo).convert("RGB"),
                                                   return_tensors="pt")["pixel_values"]
    expected = pf.analyze(load_model(str(folder)), x, 0.2, 0.1).to_json(0)
    record = json.loads((out / "photo" / "fields.json").read_text())
    assert record["windows"] == expected["windows"]
    np.testing.assert_allclose(record["column_variance"], expected["column_variance"], rtol=1e-5, atol=1e-9)
    assert json.loads((out / "analyze.json").read_text()) == {"images": [{"image": str(photo), "folder": "photo"}],
                                                              "skipped": []}


def test_a_familys_input_spec_with_resize_size_and_a_crop_pct_override(monkeypatch):
    # how a family without timm's data config plugs in: input_spec gives torchvision weights' settings
    import patchfield.preprocess as pp

    spec = {"size": (224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "crop_pct": 0.875,
            "interpolation": "bilinear", "resize_size": 256}
    monkeypatch.setattr(pp, "input_spec", lambda model: spec)
    model = tiny_vit()
    assert Preprocess.for_model(model).resize_size == 256
    p = Preprocess.for_model(model, crop_pct=1.0)  # the user's crop_pct replaces the family's resize size
    assert (p.resize_size, p.crop_pct) == (None, 1.0)
    photo = Image.fromarray(_pixels(6)[:300, :400])
    ref = _timm_reference_of(p)
    assert float((p(photo)[0] - ref(photo)).abs().max()) <= 1e-6


def _timm_reference_of(p):
    from timm.data import create_transform

    s = p.spec
    return create_transform(input_size=(3, *s.size), interpolation=s.interpolation, mean=s.mean, std=s.std,
                            crop_pct=s.crop_pct)
