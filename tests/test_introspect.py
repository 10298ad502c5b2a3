"""patchfield.introspect: grid, prefix tokens, input spec and classifier test of timm and Hugging Face ViTs."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_deit, tiny_hf_vit, tiny_vit

from patchfield.grid import Grid
from patchfield.introspect import (
    find_attention_modules,
    input_spec,
    is_classifier,
    model_grid,
    num_prefix_tokens,
    unwrap,
)


def test_input_spec_timm_follows_the_built_size_not_pretrained_cfg():
    import timm

    m = timm.create_model("vit_tiny_patch16_224", img_size=48, patch_size=8, depth=1, num_classes=3)
    spec = input_spec(m)
    assert set(spec) == {"size", "mean", "std", "crop_pct", "interpolation", "resize_mode"}
    assert spec["resize_mode"] == "shortest"  # timm's crop_mode "center"
    assert spec["size"] == (48, 48)  # pretrained_cfg still says 224
    assert spec["mean"] == (0.5, 0.5, 0.5) and spec["std"] == (0.5, 0.5, 0.5)  # augreg ViT statistics
    assert spec["crop_pct"] == 0.9 and spec["interpolation"] == "bicubic"


def test_input_spec_without_pretrained_cfg_and_hf():
    spec = input_spec(tiny_vit())
    assert spec["size"] == (32, 32) and spec["mean"] == (0.485, 0.456, 0.406) and spec["crop_pct"] == 0.875
    hf = input_spec(tiny_hf_vit())
    assert hf == {"size": (32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 1.0,
                  "interpolation": "bilinear", "resize_mode": "squash"}  # ViTImageProcessor's defaults


def test_grid_and_prefix_tokens():
    m = tiny_vit(img_size=(32, 48))
    assert model_grid(m) == Grid(4, 6)
    assert model_grid(m, 64) == Grid(8, 8)
    assert model_grid(tiny_vit(dynamic_img_size=True, dynamic_img_pad=True), (36, 40)) == Grid(5, 5)
    assert model_grid(tiny_hf_vit()) == Grid(4, 4)
    assert model_grid(tiny_hf_vit(), (48, 32)) == Grid(6, 4)
    assert num_prefix_tokens(tiny_vit()) == 1
    assert num_prefix_tokens(tiny_deit()) == 2
    assert num_prefix_tokens(tiny_vit(reg_tokens=4)) == 5
    assert num_prefix_tokens(tiny_vit(class_token=False, global_pool="avg")) == 0
    assert num_prefix_tokens(tiny_hf_vit()) == 1
    with pytest.raises(ValueError, match="patch grid of Linear"):
        model_grid(torch.nn.Linear(2, 2))


def test_is_classifier():
    assert is_classifier(tiny_vit())
    assert not is_classifier(tiny_vit(num_classes=0))
    assert is_classifier(tiny_hf_vit())
    from transformers import ViTModel

    assert not is_classifier(ViTModel(tiny_hf_vit().config, add_pooling_layer=False))


def test_attention_modules_and_unwrap():
    m = tiny_vit()
    family, modules = find_attention_modules(torch.nn.DataParallel(m))
    assert family == "timm" and modules == [b.attn for b in m.blocks]
    assert unwrap(torch.nn.DataParallel(m)) is m and unwrap(m) is m
    with pytest.raises(TypeError, match="Linear"):
        find_attention_modules(torch.nn.Linear(2, 2))


def test_required_forward_kwargs_of_patched_models():
    import patchfield.models as pm
    from patchfield.introspect import required_forward_kwargs

    assert required_forward_kwargs(tiny_vit()) == ()
    assert required_forward_kwargs(pm.apply_awd(tiny_vit())) == ("field_mask",)
    assert required_forward_kwargs(pm.apply_winft(tiny_vit())) == ()
    assert required_forward_kwargs(pm.remove_patch(pm.apply_awd(tiny_vit()))) == ()
