"""Every ViT family patchfield reads, each a tiny random-init model checked against its own reference to 1e-6
(docs/families.md): Hugging Face against ``output_attentions=True`` in eager mode, timm against a by-hand softmax,
torchvision and open_clip against ``nn.MultiheadAttention``'s own ``need_weights=True,
average_attn_weights=False``; families whose attention is not global over one grid are refused with the reason."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from patchfield import attention_hooks, capture_attention, capture_uncertainty, find_attention_modules, load_model
from patchfield.errors import InputError, UnsupportedModelError, UsageError
from patchfield.families import TORCHVISION_VITS
from patchfield.introspect import (
    has_class_token,
    input_spec,
    is_classifier,
    model_grid,
    num_prefix_tokens,
    patch_size_of,
    transformer_blocks,
)

ATOL = 1e-6


def _images(size=(32, 32), batch=2, seed=1):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


# --- Hugging Face: against output_attentions=True in eager mode -----------------------------------------------

HF_COMMON = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32,
                 patch_size=8)
HF_TEXT = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64,
               bos_token_id=0, eos_token_id=1, pad_token_id=1)


def _hf(cls: str, config: str, tower: bool = False, **kw):
    def build(impl: str):
        import transformers

        if tower:  # CLIPModel: the vision tower of the two-tower model
            cfg = getattr(transformers, config)(vision_config=HF_COMMON, text_config=HF_TEXT, projection_dim=8)
        else:
            cfg = getattr(transformers, config)(**{**HF_COMMON, **kw})
        torch.manual_seed(0)
        model = getattr(transformers, cls)._from_config(cfg, attn_implementation=impl).eval()
        return model.vision_model if tower else model

    return build


#: name: (builder, prefix tokens, whether a classifier)
HF_FAMILIES = {
    "ViTModel": (_hf("ViTModel", "ViTConfig"), 1, False),
    "ViTForImageClassification": (_hf("ViTForImageClassification", "ViTConfig", num_labels=3), 1, True),
    "Dinov2Model": (_hf("Dinov2Model", "Dinov2Config"), 1, False),
    "Dinov2WithRegistersModel": (_hf("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig",
                                     num_register_tokens=2), 3, False),
    "CLIPVisionModel": (_hf("CLIPVisionModel", "CLIPVisionConfig"), 1, False),
    "CLIPModel.vision_model": (_hf("CLIPModel", "CLIPConfig", tower=True), 1, False),
    "SiglipVisionModel": (_hf("SiglipVisionModel", "SiglipVisionConfig"), 0, False),
    "DeiTModel": (_hf("DeiTModel", "DeiTConfig"), 2, False),
    "DeiTForImageClassificationWithTeacher": (_hf("DeiTForImageClassificationWithTeacher", "DeiTConfig",
                                                  num_labels=3), 2, True),
    "BeitModel": (_hf("BeitModel", "BeitConfig", use_relative_position_bias=True), 1, False),
    "ViTMAEModel": (_hf("ViTMAEModel", "ViTMAEConfig", mask_ratio=0.0), 1, False),
}


@pytest.mark.parametrize("name", list(HF_FAMILIES))
def test_huggingface_family_equals_eager_output_attentions(name):
    build, prefix, classifier = HF_FAMILIES[name]
    model, eager = build("sdpa"), build("eager")
    eager.load_state_dict(model.state_dict())
    x = _images()
    maps = capture_attention(model, x)
    kwargs = {"noise": torch.arange(16.0).expand(2, 16)} if name == "ViTMAEModel" else {}  # grid order, as capture
    with torch.no_grad():
        out = eager(pixel_values=x, output_attentions=True, **kwargs)
    _close(maps.attn, torch.stack(out.attentions, 1))
    assert maps.num_prefix_tokens == num_prefix_tokens(model) == prefix
    assert has_class_token(model) == (prefix > 0)
    assert (maps.grid.height, maps.grid.width) == (4, 4)
    assert is_classifier(model) == classifier
    assert len(transformer_blocks(model)) == 2
    # another image size: position embeddings interpolated (Dinov2 always interpolates and takes no such argument)
    x = _images((48, 32))
    maps = capture_attention(model, x)
    if "interpolate_pos_encoding" in inspect.signature(eager.forward).parameters:
        kwargs["interpolate_pos_encoding"] = True
    if name == "ViTMAEModel":
        kwargs["noise"] = torch.arange(24.0).expand(2, 24)
    with torch.no_grad():
        out = eager(pixel_values=x, output_attentions=True, **kwargs)
    _close(maps.attn, torch.stack(out.attentions, 1))
    assert (maps.grid.height, maps.grid.width) == (6, 4)


def test_vitmae_with_masking_is_refused_with_the_setting():
    model = _hf("ViTMAEModel", "ViTMAEConfig", mask_ratio=0.75)("eager")
    with pytest.raises(UsageError, match="mask_ratio = 0"):
        capture_attention(model, _images())


def test_clip_model_is_refused_and_its_folder_loads_the_image_tower(tmp_path):
    import transformers

    clip = transformers.CLIPModel._from_config(
        transformers.CLIPConfig(vision_config=HF_COMMON, text_config=HF_TEXT, projection_dim=8)).eval()
    with pytest.raises(UnsupportedModelError, match="model.vision_model"):
        capture_attention(clip, _images())
    clip.save_pretrained(tmp_path)
    tower = load_model(str(tmp_path))
    _close(capture_attention(tower, _images()).attn, capture_attention(clip.vision_model, _images()).attn)
    assert not is_classifier(tower)


# --- timm: against a by-hand softmax of each attention module's own q and k -----------------------------------


def _timm(name: str, **kw):
    def build():
        import timm

        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, **kw).eval()

    return build


def _vit(cls: str, **kw):
    def build():
        from timm.models import deit, vision_transformer

        torch.manual_seed(0)
        module = deit if cls == "VisionTransformerDistilled" else vision_transformer
        return getattr(module, cls)(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, **kw).eval()

    return build


TINY = dict(img_size=32, embed_dim=16, depth=2, num_heads=2)
#: name: (builder, prefix tokens, image size)
TIMM_FAMILIES = {
    "registers_no_class_token": (_vit("VisionTransformer", reg_tokens=4, class_token=False, global_pool="avg",
                                      no_embed_class=True), 4, 32),
    "VisionTransformerDistilled": (_vit("VisionTransformerDistilled"), 2, 32),
    "eva02": (_timm("eva02_tiny_patch14_224", **{**TINY, "img_size": 28}), 1, 28),
    "rope_vit": (_timm("vit_base_patch16_rope_reg1_gap_256", **{**TINY, "patch_size": 8}), 1, 32),
    "rope_mixed_vit": (_timm("vit_small_patch16_rope_mixed_224", **{**TINY, "patch_size": 8}), 1, 32),
    "beit": (_timm("beit_base_patch16_224", **{**TINY, "patch_size": 8}), 1, 32),
    "siglip": (_timm("vit_base_patch16_siglip_224", **{**TINY, "patch_size": 8}), 0, 32),
    "clip": (_timm("vit_base_patch16_clip_224", **{**TINY, "patch_size": 8}), 1, 32),
}


def _by_hand(attn: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor:
    """softmax(q k^T * scale + relative position bias) from a timm attention module's input, with RoPE."""
    x = args[0]
    b, n, _ = x.shape
    h = attn.num_heads
    if getattr(attn, "qkv", None) is not None:
        bias = attn.qkv.bias
        if getattr(attn, "q_bias", None) is not None:
            bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
        q, k, _ = F.linear(x, attn.qkv.weight, bias).reshape(b, n, 3, h, -1).permute(2, 0, 3, 1, 4)
    else:
        q = attn.q_proj(x).reshape(b, n, h, -1).transpose(1, 2)
        k = attn.k_proj(x).reshape(b, n, h, -1).transpose(1, 2)
    q, k = getattr(attn, "q_norm", nn.Identity())(q), getattr(attn, "k_norm", nn.Identity())(k)
    rope = kwargs.get("rope", args[1] if len(args) > 1 else None)
    if rope is not None:  # Eva: rotary embedding of the patch tokens
        from timm.layers import apply_rot_embed_cat

        p, half = attn.num_prefix_tokens, getattr(attn, "rotate_half", False)
        q = torch.cat([q[:, :, :p], apply_rot_embed_cat(q[:, :, p:], rope, half=half)], dim=2)
        k = torch.cat([k[:, :, :p], apply_rot_embed_cat(k[:, :, p:], rope, half=half)], dim=2)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if getattr(attn, "relative_position_bias_table", None) is not None:  # BEiT
        logits = logits + attn._get_rel_pos_bias()
    return logits.softmax(-1)


@pytest.mark.parametrize("name", list(TIMM_FAMILIES))
def test_timm_family_equals_a_by_hand_softmax(name):
    build, prefix, size = TIMM_FAMILIES[name]
    model = build()
    family, modules = find_attention_modules(model)
    assert family == "timm" and len(modules) == 2
    seen: dict[int, tuple] = {}
    handles = [m.register_forward_pre_hook(lambda _m, a, k, i=i: seen.__setitem__(i, (a, k)), with_kwargs=True)
               for i, m in enumerate(modules)]
    x = _images((size, size))
    try:
        maps = capture_attention(model, x)
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        for i, m in enumerate(modules):
            _close(maps.attn[:, i], _by_hand(m, *seen[i]))
    assert maps.num_prefix_tokens == num_prefix_tokens(model) == prefix
    grid = model_grid(model)
    assert maps.attn.shape[-1] == prefix + grid.n


# --- torchvision and open_clip: against nn.MultiheadAttention's own need_weights=True ------------------------


def tiny_torchvision(**kw):
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    args = dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)
    return VisionTransformer(**{**args, **kw}).eval()


def tiny_open_clip(**kw):
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(0)
    args = dict(image_size=32, patch_size=8, width=16, layers=2, heads=2, mlp_ratio=2.0, output_dim=8)
    return VisionTransformer(**{**args, **kw}).eval()


MHA_FAMILIES = {
    "torchvision": (tiny_torchvision, "torchvision", True),
    "open_clip_class_token": (tiny_open_clip, "open_clip", False),
    "open_clip_average_pool": (lambda: tiny_open_clip(pool_type="avg"), "open_clip", False),
    "open_clip_attentional_pool": (lambda: tiny_open_clip(attentional_pool=True, attn_pooler_queries=4,
                                                          attn_pooler_heads=2), "open_clip", False),
}


def _mha_reference(model, modules, x):
    """Each module's own ``need_weights=True, average_attn_weights=False`` on its inputs in a plain forward,
    a by-hand softmax from its ``in_proj``, and the model's output."""
    own, hand = {}, {}

    def hook(module, args, kwargs, i):
        q, k, v = args[:3]
        own[i] = nn.MultiheadAttention.forward(module, q, k, v, need_weights=True, average_attn_weights=False,
                                               attn_mask=kwargs.get("attn_mask"))[1]
        d = module.embed_dim
        w, b = module.in_proj_weight, module.in_proj_bias
        qh = F.linear(q, w[:d], b[:d]).unflatten(-1, (module.num_heads, -1)).transpose(1, 2)
        kh = F.linear(k, w[d:2 * d], b[d:2 * d]).unflatten(-1, (module.num_heads, -1)).transpose(1, 2)
        hand[i] = (qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1])).softmax(-1)

    handles = [m.register_forward_pre_hook(lambda mod, a, k, i=i: hook(mod, a, k, i), with_kwargs=True)
               for i, m in enumerate(modules)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([own[i] for i in sorted(own)], 1), torch.stack([hand[i] for i in sorted(hand)], 1), out


@pytest.mark.parametrize("name", list(MHA_FAMILIES))
def test_multihead_attention_family_equals_its_own_weights(name):
    build, family, classifier = MHA_FAMILIES[name]
    model = build()
    found, modules = find_attention_modules(model)
    assert found == family and all(isinstance(m, nn.MultiheadAttention) for m in modules) and len(modules) == 2
    x = _images(batch=3)
    own, hand, out = _mha_reference(model, modules, x)
    maps = capture_attention(model, x)
    _close(maps.attn, own)
    _close(maps.attn, hand)
    _close(maps.logits, out)
    assert maps.num_prefix_tokens == num_prefix_tokens(model) == 1 and has_class_token(model)
    assert (maps.grid.height, maps.grid.width) == (4, 4) and patch_size_of(model) == (8, 8)
    assert is_classifier(model) == classifier
    assert len(transformer_blocks(model)) == 2
    stream = capture_uncertainty(model, x)
    from patchfield import interaction_uncertainty

    _close(stream.U.float(), interaction_uncertainty(maps.patch_block()).float())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("name", ["torchvision", "open_clip_class_token"])
def test_multihead_attention_training_mode_captures_the_softmax_before_dropout(name):
    build = MHA_FAMILIES[name][0]
    kw = {"attention_dropout": 0.5} if name == "torchvision" else {}
    model = build(**kw)
    x = _images()
    reference = capture_attention(model, x).attn
    if name != "torchvision":
        for block in model.transformer.resblocks:
            block.attn.dropout = 0.5
    model.train()
    maps = capture_attention(model, x)
    _close(maps.attn, reference)
    assert all(m.training for m in model.modules())


def test_a_caller_asking_for_weights_gets_what_it_asked_for_while_capturing():
    model = tiny_open_clip()
    block = model.transformer.resblocks[0].attn
    x = torch.randn(2, 17, 16)
    with torch.no_grad():
        plain_avg = block(x, x, x)[1]
        with attention_hooks(model, lambda *_: None):
            out, avg = block(x, x, x)
            _, none = block(x, x, x, need_weights=False)
            _, per_head = block(x, x, x, None, True, None, False)
    assert avg.shape == (2, 17, 17) and none is None and per_head.shape == (2, 2, 17, 17)
    _close(avg, plain_avg)


# --- loading torchvision and open_clip checkpoints from local files ------------------------------------------


@pytest.fixture
def tiny_torchvision_arch(monkeypatch):
    """A tiny architecture under its own name, as torchvision's vit_b_16 ... are."""
    monkeypatch.setitem(TORCHVISION_VITS, "vit_tiny", dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                                            mlp_dim=32))
    return "vit_tiny"


def test_torchvision_state_dict_loads_by_name_or_detected(tmp_path, tiny_torchvision_arch):
    model = tiny_torchvision()
    torch.save(model.state_dict(), tmp_path / "vit.pth")
    x = _images()
    for name in ("torchvision", f"torchvision:{tiny_torchvision_arch}"):
        loaded = load_model(name, tmp_path / "vit.pth")
        _close(loaded(x), model(x))
    bigger = load_model("torchvision", tmp_path / "vit.pth", img_size=48)  # position embedding resampled
    assert capture_attention(bigger, _images((48, 48))).attn.shape == (2, 2, 2, 37, 37)
    with pytest.raises(ValueError, match="torchvision:vit_b_16"):
        load_model("vit_base_patch16_224", tmp_path / "vit.pth")
    with pytest.raises(ValueError, match="built for 32x32"):
        capture_attention(model, _images((48, 48)))


def test_torchvision_input_spec_is_its_weights_transforms(monkeypatch):
    # vit_l_16's IMAGENET1K_V1 resizes to 242 and crops 224, bilinear; its SWAG weights at 512 resize to 512, bicubic
    monkeypatch.setitem(TORCHVISION_VITS, "vit_l_16", dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                                            mlp_dim=32))
    spec = input_spec(tiny_torchvision(image_size=224))
    assert spec["size"] == (224, 224) and spec["interpolation"] == "bilinear"
    assert spec["crop_pct"] == pytest.approx(224 / 242)
    assert spec["mean"] == pytest.approx((0.485, 0.456, 0.406)) and spec["std"] == pytest.approx((0.229, 0.224, 0.225))
    swag = input_spec(tiny_torchvision(image_size=512))
    assert swag["crop_pct"] == 1.0 and swag["interpolation"] == "bicubic"
    other = input_spec(tiny_torchvision())  # no torchvision weights at 32 px: the IMAGENET1K_V1 rule
    assert other["crop_pct"] == pytest.approx(224 / 256) and other["interpolation"] == "bilinear"


@pytest.fixture
def tiny_open_clip_name(tmp_path):
    """A tiny open_clip model config registered the way open_clip's users add one (open_clip.add_model_config)."""
    import open_clip

    folder = tmp_path / "configs"
    folder.mkdir()
    config = {"embed_dim": 8, "vision_cfg": {"image_size": 32, "layers": 2, "width": 16, "patch_size": 8,
                                             "head_width": 8, "mlp_ratio": 4.0},
              "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (folder / "patchfield-tiny-vit.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return "patchfield-tiny-vit"


def _open_clip_checkpoint(tmp_path, name):
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model(name, pretrained=None).eval()
    torch.save(clip.state_dict(), tmp_path / "open_clip.pt")
    return clip


def test_open_clip_checkpoint_loads_its_image_tower(tmp_path, tiny_open_clip_name):
    clip = _open_clip_checkpoint(tmp_path, tiny_open_clip_name)
    x = _images()
    tower = load_model(f"open_clip:{tiny_open_clip_name}", tmp_path / "open_clip.pt")
    with torch.no_grad():
        _close(tower(x), clip.encode_image(x))
    assert not is_classifier(tower)
    spec = input_spec(tower)
    assert spec["crop_pct"] == 1.0 and spec["interpolation"] == "bicubic" and spec["size"] == (32, 32)
    assert spec["mean"] == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    torch.save(clip.visual.state_dict(), tmp_path / "tower.pt")  # the image tower's state dict alone
    alone = load_model(f"open_clip:{tiny_open_clip_name}", tmp_path / "tower.pt")
    _close(capture_attention(alone, x).attn, capture_attention(tower, x).attn)
    # open_clip's training checkpoint ({"epoch", "state_dict" with DDP's module. prefix}) and a .safetensors file
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}},
               tmp_path / "epoch_3.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, tmp_path / "open_clip.safetensors")
    for path in ("epoch_3.pt", "open_clip.safetensors"):
        _close(capture_attention(load_model(f"open_clip:{tiny_open_clip_name}", tmp_path / path), x).attn,
               capture_attention(tower, x).attn)
    bigger = load_model(f"open_clip:{tiny_open_clip_name}", tmp_path / "open_clip.pt", img_size=48)
    assert capture_attention(bigger, _images((48, 48))).grid.n == 36
    with pytest.raises(ValueError, match="never downloads"):
        load_model("open_clip:hf-hub:timm/ViT-B-16-SigLIP", tmp_path / "open_clip.pt")
    with pytest.raises(UnsupportedModelError, match="model.visual"):
        capture_attention(clip, x)


def test_open_clip_reads_openai_torchscript_files(tmp_path, tiny_open_clip_name):
    """OpenAI's CLIP ``.pt`` files are TorchScript archives in float16, with the causal ``attn_mask`` (-inf) in
    their state: read by torch.jit.load, the -inf mask not taken for a diverged run, fp16 loaded into float32."""
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model(tiny_open_clip_name, pretrained=None).eval().half()
    torch.jit.save(torch.jit.script(clip), tmp_path / "ViT-tiny.pt")
    tower = load_model(f"open_clip:{tiny_open_clip_name}", tmp_path / "ViT-tiny.pt")
    assert next(tower.parameters()).dtype == torch.float32
    reference = open_clip.create_model(tiny_open_clip_name, pretrained=None).eval()
    reference.load_state_dict(clip.float().state_dict())
    x = _images()
    with torch.no_grad():
        _close(tower(x), reference.encode_image(x))
    nan = {k: v.clone() for k, v in reference.state_dict().items()}
    nan["visual.proj"][0, 0] = float("nan")
    broken = open_clip.create_model(tiny_open_clip_name, pretrained=None).eval()
    broken.load_state_dict(nan)
    torch.jit.save(torch.jit.script(broken), tmp_path / "nan.pt")
    with pytest.raises(InputError, match=r"nan\.pt hold NaN or Inf values in 1 tensor\(s\): visual\.proj"):
        load_model(f"open_clip:{tiny_open_clip_name}", tmp_path / "nan.pt")


def test_open_clip_checkpoint_converts_into_timm_clip_vit(tmp_path, tiny_open_clip_name):
    clip = _open_clip_checkpoint(tmp_path, tiny_open_clip_name)
    x = _images()
    timm_clip = load_model("vit_base_patch16_clip_224", tmp_path / "open_clip.pt", img_size=32, patch_size=8,
                           embed_dim=16, depth=2, num_heads=2, mlp_ratio=4.0)
    with torch.no_grad():
        torch.testing.assert_close(timm_clip(x), clip.encode_image(x), atol=1e-5, rtol=1e-5)
    _close(capture_attention(timm_clip, x).attn, capture_attention(clip.visual, x).attn)
    assert not is_classifier(timm_clip)  # CLIP's projection, not a classifier


@pytest.mark.parametrize(("classes", "classifier"), [(512, False), (1000, True)])
def test_timm_clip_tower_head_is_no_classifier(tmp_path, classes, classifier):
    # a timm-layout CLIP checkpoint: 512 outputs is the ViT-B image tower's projection (timm's "openai" weights),
    # 1000 a fine-tuned ImageNet classifier ("openai_ft_in1k")
    model = _timm("vit_base_patch16_clip_224", **{**TINY, "patch_size": 8}, num_classes=classes)()
    torch.save(model.state_dict(), tmp_path / "w.pth")
    loaded = load_model("vit_base_patch16_clip_224", tmp_path / "w.pth", img_size=32, patch_size=8, embed_dim=16,
                        depth=2, num_heads=2)
    assert is_classifier(loaded) == classifier


# --- refused families: one line naming the reason -------------------------------------------------------------


def _refused():
    import timm
    from timm.models.mvitv2 import MultiScaleVit, MultiScaleVitCfg

    return {
        "swin": lambda: timm.create_model("swin_tiny_patch4_window7_224", embed_dim=16, depths=(1, 1),
                                          num_heads=(1, 2), img_size=56, window_size=7),
        "sam": lambda: timm.create_model("samvit_base_patch16", embed_dim=16, depth=2, num_heads=2, img_size=64,
                                         global_attn_indexes=(1,), neck_chans=8, window_size=2),
        "pit": lambda: timm.create_model("pit_ti_224", img_size=64),
        "mvit": lambda: MultiScaleVit(MultiScaleVitCfg(depths=(1, 1), embed_dim=(8, 16), num_heads=(1, 2)),
                                      img_size=(32, 32), num_classes=2),
        "xcit": lambda: timm.create_model("xcit_nano_12_p16_224", depth=2, embed_dim=16, num_heads=2, img_size=32),
        "cait": lambda: timm.create_model("cait_xxs24_224", depth=2, depth_token_only=1, embed_dim=16, num_heads=2,
                                          img_size=32),
    }


REASONS = {"swin": "windowed", "sam": "windowed", "pit": "pooled", "mvit": "pooled", "xcit": "channel attention",
           "cait": "class-attention"}


@pytest.mark.parametrize("name", list(REASONS))
def test_families_without_one_global_grid_are_refused_with_the_reason(name):
    model = _refused()[name]()
    for call in (find_attention_modules, model_grid, input_spec, transformer_blocks,
                 lambda m: capture_attention(m, _images())):
        with pytest.raises(UnsupportedModelError, match=REASONS[name]) as info:
            call(model)
        assert "\n" not in str(info.value)


def test_huggingface_swin_is_refused():
    from transformers import SwinConfig, SwinModel

    model = SwinModel(SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                                 window_size=4))
    with pytest.raises(UnsupportedModelError, match="windowed"):
        capture_attention(model, _images())


def test_every_command_names_the_reason_in_one_line(tmp_path, capsys):
    from PIL import Image

    from patchfield.cli import main

    image = tmp_path / "a.png"
    Image.new("RGB", (64, 64), (120, 30, 200)).save(image)
    model = ["--model", "pit_ti_224", "--random-weights"]
    commands = {
        "analyze": ["analyze", str(image), *model, "--out", str(tmp_path / "a")],
        "stats": ["stats", str(image), *model, "--out", str(tmp_path / "s")],
        "explore": ["explore", str(image), *model, "--out", str(tmp_path / "e.html")],
        "figures": ["figures", str(image), *model, "--out", str(tmp_path / "f")],
        "faithfulness": ["faithfulness", str(image), *model, "--out", str(tmp_path / "g")],
        "claims": ["claims", "--data", "synthetic", "--limit", "2", *model, "--out", str(tmp_path / "c")],
    }
    for command, argv in commands.items():
        assert main(argv) == 2, command
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "pooled token grids" in err[0], (command, err)


# --- the CLI on torchvision and open_clip models saved locally ------------------------------------------------


@pytest.mark.parametrize("family", ["torchvision", "open_clip"])
def test_analyze_stats_explore_from_saved_files(tmp_path, family, tiny_torchvision_arch, tiny_open_clip_name,
                                                caplog):
    from PIL import Image

    from patchfield.cli import main

    if family == "torchvision":
        torch.save(tiny_torchvision().state_dict(), tmp_path / "w.pth")
        model = ["--model", "torchvision", "--weights", str(tmp_path / "w.pth")]
    else:
        _open_clip_checkpoint(tmp_path, tiny_open_clip_name)
        model = ["--model", f"open_clip:{tiny_open_clip_name}", "--weights", str(tmp_path / "open_clip.pt")]
    image = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), (10, 200, 90)).save(image)
    assert main(["analyze", str(image), *model, "--no-figures", "--out", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "photo" / "fields.json").read_text())
    assert ("predicted_class" in record) == (family == "torchvision")
    assert "NaN or Inf" not in caplog.text  # an image tower's embedding is no classifier's output
    assert main(["stats", str(image), *model, "--no-figures", "--out", str(tmp_path / "s")]) == 0
    assert main(["explore", str(image), *model, "--out", str(tmp_path / "e.html")]) == 0
    assert (tmp_path / "e.html").stat().st_size > 0
    assert main(["claims", "--data", "synthetic", "--limit", "2", "--random-inits", "1", *model, "--no-progress",
                 "--out", str(tmp_path / "c")]) == 0
    assert main(["figures", str(image), *model, "--only", "fig5", "--out", str(tmp_path / "f")]) == 0
    faithfulness = main(["faithfulness", str(image), *model, "--steps", "4", "--out", str(tmp_path / "g")])
    assert faithfulness == (0 if family == "torchvision" else 2)  # an image tower has no class to follow


# --- the extension point: the worked example of docs/extending.md, run as written -----------------------------


def _doc_blocks() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_a_users_own_vit_through_the_documented_extension_point(monkeypatch):
    from patchfield import families
    from patchfield.claims.run import random_copy
    from patchfield.stats import head_statistics

    monkeypatch.setattr(families, "_FAMILIES", list(families._FAMILIES))  # the registration ends with the test
    example: dict = {}
    blocks = _doc_blocks()
    exec(compile(blocks[0], "docs/extending.md", "exec"), example)
    torch.manual_seed(0)
    model = example["PlainViT"]().eval()
    family, modules = find_attention_modules(model)
    assert family == "plain-vit" and len(modules) == 2
    seen: dict[int, tuple] = {}
    handles = [m.register_forward_hook(lambda _m, a, out, i=i: seen.__setitem__(i, (a[0], out)))
               for i, m in enumerate(modules)]
    x = _images(batch=3)
    try:
        maps = capture_attention(model, x)
    finally:
        for handle in handles:
            handle.remove()
    assert maps.attn.shape == (3, 2, 2, 17, 17) and maps.num_prefix_tokens == 1
    _close(maps.attn.sum(-1), torch.ones(3, 2, 2, 17))
    with torch.no_grad():  # the captured probabilities are the ones each module multiplied its values with
        for i, m in enumerate(modules):
            inp, out = seen[i]
            v = m.qkv(inp).reshape(3, 17, 3, 2, 8)[:, :, 2].transpose(1, 2)
            _close(m.proj((maps.attn[:, i] @ v).transpose(1, 2).reshape(3, 17, 16)), out)
        _close(maps.logits, model(x))
    exec(compile(blocks[1], "docs/extending.md", "exec"), example)  # the usage block runs as written
    result = example["result"]
    assert result.predicted_classes() is not None and result.U.shape == (4, 16, 16)
    stats = head_statistics(model, x)
    assert stats is not None
    control = random_copy(model, 0)
    assert not torch.equal(control.layers[0].attn.qkv.weight, model.layers[0].attn.qkv.weight)
    assert input_spec(model)["size"] == (32, 32)
