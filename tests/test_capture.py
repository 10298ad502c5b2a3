"""Attention capture from timm and Hugging Face ViTs (docs/spec.md §1)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_deit, tiny_hf_vit, tiny_vit

from patchfield import analyze, capture_attention, capture_uncertainty, interaction_uncertainty

MODELS = {
    "vit": (lambda: tiny_vit(), 1, (4, 4), (32, 32)),
    "deit_distilled": (tiny_deit, 2, (4, 4), (32, 32)),
    "registers_no_cls": (
        lambda: tiny_vit(reg_tokens=4, class_token=False, global_pool="avg", no_embed_class=True), 4, (4, 4), (32, 32)
    ),
    "non_square": (lambda: tiny_vit(img_size=(24, 48), patch_size=(8, 8)), 1, (3, 6), (24, 48)),
    "patch4": (lambda: tiny_vit(img_size=(20, 16), patch_size=4, reg_tokens=1), 2, (5, 4), (20, 16)),
    "dynamic_size": (lambda: tiny_vit(dynamic_img_size=True), 1, (5, 3), (40, 24)),
    "huggingface": (tiny_hf_vit, 1, (4, 4), (32, 32)),
    "huggingface_other_size": (tiny_hf_vit, 1, (6, 4), (48, 32)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_capture_shapes_and_rows(name):
    build, prefix, grid, size = MODELS[name]
    model = build()
    x = torch.randn(3, 3, *size)
    maps = capture_attention(model, x)
    t = prefix + grid[0] * grid[1]
    assert maps.attn.shape == (3, 2, 2, t, t)
    assert maps.num_prefix_tokens == prefix
    assert (maps.grid.height, maps.grid.width) == grid
    torch.testing.assert_close(maps.attn.sum(-1), torch.ones(3, 2, 2, t))
    assert maps.patch_block().shape == (3, 2, 2, t - prefix, t - prefix)
    torch.testing.assert_close(maps.patch_block(renormalize=True).sum(-1), torch.ones(3, 2, 2, t - prefix))
    assert torch.equal(maps["blocks.1.attn"], maps.attn[:, 1])


@pytest.mark.parametrize("name", list(MODELS))
def test_capture_leaves_output_and_settings_unchanged(name):
    build, *_, size = MODELS[name]
    model = build()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        if name.startswith("huggingface"):
            before = model(pixel_values=x, interpolate_pos_encoding=size != (32, 32)).logits
        else:
            before = model(x)
    state = _attention_state(model)
    maps = capture_attention(model, x)
    torch.testing.assert_close(maps.logits, before, atol=1e-5, rtol=1e-5)
    assert _attention_state(model) == state


def _attention_state(model):
    fused = tuple(getattr(m, "fused_attn", None) for m in model.modules())
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return fused, hooks, impl


def test_settings_restored_when_forward_raises():
    model = tiny_vit()
    state = _attention_state(model)
    assert state[0].count(True) == 2  # timm's fused kernel is on
    with pytest.raises(ValueError, match="img_size"):
        capture_attention(model, torch.randn(1, 3, 48, 48))  # wrong size for a fixed-size model
    assert _attention_state(model) == state


def test_timm_fused_equals_unfused_and_hand_computation():
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32)
    fused = capture_attention(model, x).attn
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    torch.testing.assert_close(capture_attention(model, x).attn, fused)
    # softmax(QK^T / sqrt(d)) by hand for layer 1
    blk = model.blocks[1]
    seen = {}
    h = blk.attn.register_forward_hook(lambda m, i, o: seen.setdefault("in", i[0]))
    with torch.no_grad():
        model(x)
    h.remove()
    q, k, _ = blk.attn.qkv(seen["in"]).reshape(2, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
    hand = (q @ k.transpose(-1, -2) / 16**0.5).softmax(-1)
    torch.testing.assert_close(fused[:, 1], hand, atol=1e-6, rtol=1e-5)


def test_hf_capture_equals_eager_attentions_and_hand_computation():
    model = tiny_hf_vit("sdpa")
    x = torch.randn(2, 3, 32, 32)
    maps = capture_attention(model, x)
    eager = tiny_hf_vit("eager")
    with torch.no_grad():
        out = eager(pixel_values=x, output_attentions=True)
    torch.testing.assert_close(maps.attn, torch.stack(out.attentions, 1))
    layer = model.vit.layers[0]
    with torch.no_grad():
        h = layer.layernorm_before(model.vit.embeddings(x))
        q = layer.attention.q_proj(h).reshape(2, 17, 2, 16).transpose(1, 2)
        k = layer.attention.k_proj(h).reshape(2, 17, 2, 16).transpose(1, 2)
    torch.testing.assert_close(maps.attn[:, 0], (q @ k.transpose(-1, -2) / 4).softmax(-1), atol=1e-6, rtol=1e-5)


def test_layers_subset_and_negative_indices():
    model = tiny_vit(depth=4)
    x = torch.randn(2, 3, 32, 32)
    full = capture_attention(model, x)
    some = capture_attention(model, x, layers=[0, -1])
    assert some.layers == (0, 3)
    torch.testing.assert_close(some.attn, full.attn[:, [0, 3]])
    # unselected layers keep the fused kernel during capture
    with pytest.raises(ValueError, match="out of range"):
        capture_attention(model, x, layers=[4])


def test_streaming_equals_stacked():
    model = tiny_vit(depth=3, reg_tokens=2)
    x = torch.randn(4, 3, 32, 32)
    maps = capture_attention(model, x)
    stream = capture_uncertainty(model, x)
    ref = interaction_uncertainty(maps.patch_block().double())
    assert ((stream.U.double() - ref).norm() / ref.norm()) <= 1e-5
    torch.testing.assert_close(stream.mean_attention, maps.patch_block().mean(1))


def test_analyze_end_to_end():
    model = tiny_vit()
    res = analyze(model, torch.randn(2, 3, 32, 32), alpha=1.0, beta=0.25)
    assert res.U.shape == (2, 16, 16)
    assert res.windows.interactions().tolist() == [256, 256]
    assert res.dropped.sum(-1).tolist() == [4, 4]
    assert res.interactions().tolist() == [16 * 12 + 4] * 2
    rec = res.to_json(0)
    assert rec["grid"] == [4, 4] and len(rec["windows"]) == 16 and len(rec["dropped"]) == 4


def test_unsupported_model_fails_loudly():
    with pytest.raises(TypeError, match="Sequential"):
        capture_attention(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), torch.randn(1, 3, 8, 8))


def test_scripted_like_model_without_calls_fails_loudly():
    model = tiny_vit()

    class Skip(torch.nn.Module):  # a wrapper whose forward bypasses the attention modules
        def __init__(self, inner):
            super().__init__()
            self.blocks, self.patch_embed, self.inner = inner.blocks, inner.patch_embed, inner

        def forward(self, x):
            return self.inner.patch_embed(x).mean((1, 2))

    with pytest.raises(RuntimeError, match="captured 0 of 2"):
        capture_attention(Skip(model), torch.randn(1, 3, 32, 32))


def test_bad_images_shape():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        capture_attention(tiny_vit(), torch.randn(3, 32, 32))


def _hf_with_attention_dropout():
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=8, num_labels=5, attention_probs_dropout_prob=0.5,
    )
    torch.manual_seed(0)
    return ViTForImageClassification._from_config(config, attn_implementation="sdpa")


@pytest.mark.parametrize("family", ["timm", "huggingface"])
def test_training_mode_captures_the_softmax_before_dropout(family):
    model = tiny_vit(attn_drop_rate=0.5) if family == "timm" else _hf_with_attention_dropout()
    model.train()
    x = torch.randn(2, 3, 32, 32)
    maps = capture_attention(model, x)
    torch.testing.assert_close(maps.attn.sum(-1), torch.ones(2, 2, 2, 17))
    stream = capture_uncertainty(model, x)
    torch.testing.assert_close(stream.mean_attention.sum(-1), maps.patch_block().mean(1).sum(-1), atol=0.05, rtol=0)
    assert all(m.training for m in model.modules())  # the model's mode is restored


def test_predicted_class_only_for_classifier_heads():
    x = torch.randn(2, 3, 32, 32)
    res = analyze(tiny_vit(), x)
    assert res.to_json(0)["predicted_class"] == int(res.logits[0].argmax())
    assert res.predicted_classes().tolist() == res.logits.argmax(-1).tolist()
    backbone = analyze(tiny_vit(num_classes=0), x)  # a feature vector, not class logits
    assert backbone.logits.shape == (2, 32)
    assert backbone.predicted_classes() is None and "predicted_class" not in backbone.to_json(0)
    from transformers import ViTModel

    hf = ViTModel(tiny_hf_vit().config, add_pooling_layer=False).eval()
    assert "predicted_class" not in analyze(hf, x).to_json(0)


def test_negative_layer_index_is_the_model_layer_everywhere():
    model = tiny_vit(depth=4)
    x = torch.randn(1, 3, 32, 32)
    first = capture_attention(model, x, layers=[0])
    with pytest.raises(KeyError, match="model's layer 3 of 4"):
        first.layer(-1)
    torch.testing.assert_close(first.layer(0), first.attn[:, 0])
    full = capture_attention(model, x)
    torch.testing.assert_close(full.layer(-1), full.attn[:, 3])
    torch.testing.assert_close(full.layer(-4), full.attn[:, 0])
    last = capture_attention(model, x, layers=[-1])
    assert last.layers == (3,)
    torch.testing.assert_close(last.layer(-1), full.attn[:, 3])
    torch.testing.assert_close(capture_attention(model, x, layers=[1, 2]).layer(-2), full.attn[:, 2])
