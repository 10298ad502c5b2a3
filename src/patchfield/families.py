"""ViT families read through a :class:`ViTFamily`: torchvision and open_clip ViTs, and a user's own ViT.

timm and Hugging Face ViTs have their own paths in :mod:`patchfield.capture` and
:mod:`patchfield.introspect`. Every other ViT is described by a :class:`ViTFamily`: where its
attention modules and blocks are, its patch grid and prefix tokens, its preprocessing, and a
function returning each layer's attention probabilities from a forward hook on the attention
module. Built in: :class:`TorchvisionViT` and :class:`OpenClipViT` (``nn.MultiheadAttention``
asked for ``need_weights=True, average_attn_weights=False`` while capturing). A user's own ViT
is plugged in with :func:`register_family` (docs/extending.md).

Families whose attention is not global over one token grid (Swin, SAM, PiT, MViT, XCiT, CaiT)
are refused by :func:`refuse_unsupported` with one line naming the reason.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from .errors import UnsupportedModelError
from .grid import Grid

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "MultiheadAttentionViT",
    "OpenClipViT",
    "TorchvisionViT",
    "ViTFamily",
    "family_of",
    "refuse_unsupported",
    "register_family",
    "unregister_family",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _derives_from(model: nn.Module, module: str, name: str) -> bool:
    """Whether ``model``'s class is, or subclasses, class ``name`` of ``module`` (without importing it)."""
    return any(c.__module__ == module and c.__name__ == name for c in type(model).__mro__)


class ViTFamily:
    """How patchfield reads one family of ViTs (subclass it for a ViT the library does not know).

    Required: :meth:`matches`, :meth:`attention_modules`, :meth:`blocks`, :meth:`patch_size`,
    :meth:`image_size`, :meth:`num_prefix_tokens` and :meth:`attention`. The rest have defaults.
    Capture hooks each chosen attention module: :meth:`capture_call` may change its call while
    capturing, :meth:`attention` reads the ``[B, heads, T, T]`` softmax probabilities (before
    attention dropout) after it ran, and :meth:`caller_output` gives the caller what it asked for.
    The captured modules run in eval mode during capture (no attention dropout); the rest of the
    model keeps its mode. Tokens are ``P`` prefix tokens followed by the patches in row-major order.
    """

    #: the family's name, as :func:`patchfield.find_attention_modules` reports it
    name = "custom"

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` belongs to this family."""
        raise NotImplementedError

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        """The attention modules over the token grid, first layer first (not an attention-pooling head)."""
        raise NotImplementedError

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The transformer blocks in order; each returns tokens ``[B, T, D]`` (or a tuple starting with them)."""
        raise NotImplementedError

    def patch_size(self, model: nn.Module) -> tuple[int, int]:
        """``(ph, pw)`` in input pixels."""
        raise NotImplementedError

    def image_size(self, model: nn.Module) -> tuple[int, int]:
        """``(H, W)`` the model was built for."""
        raise NotImplementedError

    def num_prefix_tokens(self, model: nn.Module) -> int:
        """``P``: class, distillation and register tokens before the patches."""
        raise NotImplementedError

    def attention(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> torch.Tensor:
        """The softmax attention ``[B, heads, T, T]`` of one call of ``module`` (its inputs and output as
        called during capture)."""
        raise NotImplementedError

    def grid(self, model: nn.Module, image_size: tuple[int, int] | None = None) -> Grid:
        """The patch grid for an input of ``image_size`` (the built size by default): size // patch per side."""
        h, w = self.image_size(model) if image_size is None else _pair(image_size)
        ph, pw = self.patch_size(model)
        return Grid(h // ph, w // pw)

    def has_class_token(self, model: nn.Module) -> bool:
        """Whether token 0 is a class token (default: any prefix token)."""
        return self.num_prefix_tokens(model) > 0

    def is_classifier(self, model: nn.Module) -> bool:
        """Whether the forward's output is class logits (so its argmax is a predicted class); default no."""
        return False

    def input_spec(self, model: nn.Module) -> dict[str, Any]:
        """``{"size", "mean", "std", "crop_pct", "interpolation"}``; default: ImageNet mean/std, crop 0.875, bicubic."""
        return {"size": self.image_size(model), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": 0.875,
                "interpolation": "bicubic"}

    def forward(self, model: nn.Module, images: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The model's output for ``images`` (the first element of a tuple output)."""
        out = model(images, **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out

    def random_copy(self, model: nn.Module) -> nn.Module:
        """The same architecture with fresh random weights (the random-weights controls of ``patchfield claims``),
        drawn from the global RNG; default: a copy whose modules' ``reset_parameters`` ran."""
        clone = copy.deepcopy(model)
        reset = [m for m in clone.modules() if callable(getattr(m, "reset_parameters", None))]
        if not reset:
            raise ValueError(f"cannot re-initialise a {type(model).__name__}: override ViTFamily.random_copy")
        for module in reset:
            module.reset_parameters()
        return clone

    def capture_call(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """The call of an attention module while capturing (default: unchanged)."""
        return args, kwargs

    def caller_output(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        """What the caller gets back, given its own ``args``/``kwargs`` (default: ``output``)."""
        return output


_MHA_OPTIONAL = ("key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")


class MultiheadAttentionViT(ViTFamily):
    """A ViT whose attention modules are ``nn.MultiheadAttention``: captured as the module's own
    ``need_weights=True, average_attn_weights=False`` weights of the same call (attention dropout off)."""

    @staticmethod
    def _named(args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """Positional arguments after query, key and value as keywords."""
        extra = dict(zip(_MHA_OPTIONAL, args[3:]))
        return args[:3], {**kwargs, **extra}

    def capture_call(self, module, args, kwargs):
        args, kwargs = self._named(args, kwargs)
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def attention(self, module, args, kwargs, output):
        weights = output[1]
        if not isinstance(weights, torch.Tensor) or weights.dim() != 4:
            raise RuntimeError(f"nn.MultiheadAttention returned weights of shape {getattr(weights, 'shape', None)}, "
                               "expected [B, heads, T, T] (batched input)")
        return weights

    def caller_output(self, module, args, kwargs, output):
        _, kwargs = self._named(args, kwargs)
        if not kwargs.get("need_weights", True):
            return output[0], None
        weights = output[1]
        return output[0], weights.mean(1) if kwargs.get("average_attn_weights", True) else weights


#: torchvision ViT architectures: (patch_size, num_layers, num_heads, hidden_dim, mlp_dim) by builder name.
TORCHVISION_VITS: dict[str, dict[str, int]] = {
    "vit_b_16": dict(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072),
    "vit_b_32": dict(patch_size=32, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072),
    "vit_l_16": dict(patch_size=16, num_layers=24, num_heads=16, hidden_dim=1024, mlp_dim=4096),
    "vit_l_32": dict(patch_size=32, num_layers=24, num_heads=16, hidden_dim=1024, mlp_dim=4096),
    "vit_h_14": dict(patch_size=14, num_layers=32, num_heads=16, hidden_dim=1280, mlp_dim=5120),
}


class TorchvisionViT(MultiheadAttentionViT):
    """torchvision's ``VisionTransformer`` (``vit_b_16``, ``vit_b_32``, ``vit_l_16``, ``vit_l_32``, ``vit_h_14``)."""

    name = "torchvision"

    def matches(self, model):
        return _derives_from(model, "torchvision.models.vision_transformer", "VisionTransformer")

    def attention_modules(self, model):
        return [block.self_attention for block in model.encoder.layers]

    def blocks(self, model):
        return list(model.encoder.layers)

    def patch_size(self, model):
        return _pair(model.patch_size)

    def image_size(self, model):
        return _pair(model.image_size)

    def num_prefix_tokens(self, model):
        return 1  # the class token

    def is_classifier(self, model):
        return isinstance(getattr(model.heads, "head", None), nn.Linear)  # not when heads was replaced by Identity

    def arch(self, model: nn.Module) -> str | None:
        """The torchvision builder name of the model's architecture (``None`` for another shape)."""
        shape = dict(patch_size=int(model.patch_size), num_layers=len(model.encoder.layers),
                     hidden_dim=int(model.hidden_dim), mlp_dim=int(model.mlp_dim))
        heads = int(model.encoder.layers[0].self_attention.num_heads)
        for name, cfg in TORCHVISION_VITS.items():
            if all(cfg[k] == v for k, v in shape.items()) and cfg["num_heads"] == heads:
                return name
        return None

    def input_spec(self, model):
        """The settings of the ``transforms()`` of the model's torchvision weights at its image size: the
        architecture's weights whose crop size is the model's (``IMAGENET1K_V1`` first, so ``vit_b_16`` at
        224 is resized to 256 bilinear and centre-cropped, ``crop_pct`` 224/256; the SWAG end-to-end weights
        at 384/512/518 are resized to the crop size, bicubic). Another size or architecture: the
        ``IMAGENET1K_V1`` rule (resize 256/224 of the size, bilinear), ImageNet mean and std."""
        from torchvision.models import get_model_weights

        size = self.image_size(model)
        arch = self.arch(model)
        names = [arch] if arch else []
        names += [n for n in TORCHVISION_VITS if n not in names]
        for name in names:
            try:
                known = list(get_model_weights(name))
            except ValueError:  # an architecture torchvision has no weights for
                known = []
            for weights in known:
                t = weights.transforms()
                if _pair(t.crop_size[0] if len(t.crop_size) == 1 else t.crop_size) == size:
                    return {"size": size, "mean": tuple(t.mean), "std": tuple(t.std),
                            "crop_pct": float(t.crop_size[0]) / float(t.resize_size[0]),
                            "interpolation": t.interpolation.value}
        return {"size": size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": 224 / 256,
                "interpolation": "bilinear"}

    def random_copy(self, model):
        """torchvision's own initialisation: the architecture built again."""
        from torchvision.models.vision_transformer import VisionTransformer

        if not isinstance(model.conv_proj, nn.Conv2d):  # a convolutional stem: reset what can be reset
            return super().random_copy(model)
        return VisionTransformer(
            image_size=model.image_size, patch_size=model.patch_size, num_layers=len(model.encoder.layers),
            num_heads=model.encoder.layers[0].self_attention.num_heads, hidden_dim=model.hidden_dim,
            mlp_dim=model.mlp_dim, dropout=model.dropout, attention_dropout=model.attention_dropout,
            num_classes=model.num_classes, representation_size=model.representation_size,
            norm_layer=model.norm_layer,
        ).to(next(model.parameters()).dtype)

    def forward(self, model, images, **kwargs):
        size = self.image_size(model)
        if tuple(images.shape[-2:]) != size:
            raise ValueError(f"torchvision VisionTransformer is built for {size[0]}x{size[1]} images, got "
                             f"{images.shape[-2]}x{images.shape[-1]}: load it for that size (--image-size, "
                             "load_model(..., img_size=S)), which resamples its position embedding")
        return super().forward(model, images, **kwargs)


class OpenClipViT(MultiheadAttentionViT):
    """open_clip's ``VisionTransformer`` image tower (CLIP, OpenCLIP; class-token, average or
    attentional pooling); its ``ResidualAttentionBlock`` attention is ``nn.MultiheadAttention``."""

    name = "open_clip"

    def matches(self, model):
        return _derives_from(model, "open_clip.transformer", "VisionTransformer")

    def attention_modules(self, model):
        modules = [getattr(block, "attn", None) for block in model.transformer.resblocks]
        if not all(isinstance(m, nn.MultiheadAttention) for m in modules):
            raise UnsupportedModelError(
                "open_clip VisionTransformer with custom attention blocks (block_type='custom': qk_norm, scaled "
                "cosine or scaled heads) is not supported: patchfield reads its nn.MultiheadAttention blocks")
        if not getattr(model.transformer, "batch_first", False):
            raise UnsupportedModelError("this open_clip version runs its transformer sequence-first; "
                                        "upgrade it: pip install 'patchfield[openclip]'")
        return modules

    def blocks(self, model):
        self.attention_modules(model)  # refuses the block types patchfield cannot read
        return list(model.transformer.resblocks)

    def patch_size(self, model):
        return _pair(model.patch_size)

    def image_size(self, model):
        return _pair(model.image_size)

    def num_prefix_tokens(self, model):
        return 1  # open_clip's class embedding, prepended whatever the pooling

    def input_spec(self, model):
        """open_clip's ``image_transform`` settings from the tower's ``preprocess_cfg`` (OpenAI CLIP mean and
        std, bicubic by default): resize the short side to the size and centre-crop, ``crop_pct`` 1.0."""
        cfg = dict(getattr(model, "preprocess_cfg", None) or {})
        mode = cfg.get("resize_mode", "shortest")
        if mode != "shortest":
            logger.warning("open_clip resize_mode %r: patchfield resizes the short side and centre-crops "
                           "(open_clip's 'shortest'); override the preprocessing if that differs", mode)
        return {"size": self.image_size(model), "mean": tuple(float(v) for v in cfg.get("mean", OPENAI_CLIP_MEAN)),
                "std": tuple(float(v) for v in cfg.get("std", OPENAI_CLIP_STD)), "crop_pct": 1.0,
                "interpolation": str(cfg.get("interpolation", "bicubic"))}

    def random_copy(self, model):
        """open_clip's initialisation: PyTorch's module defaults, the class and learnable position embeddings and
        the projection drawn at ``width ** -0.5`` as its constructor does."""
        clone = copy.deepcopy(model)
        for module in clone.modules():
            for name in ("reset_parameters", "_reset_parameters"):  # nn.MultiheadAttention: _reset_parameters
                if callable(getattr(module, name, None)):
                    getattr(module, name)()
                    break
        scale = int(clone.class_embedding.shape[-1]) ** -0.5
        with torch.no_grad():
            clone.class_embedding.normal_(0.0, scale)
            if clone.positional_embedding.requires_grad:  # learnable (sin-cos ones are fixed)
                clone.positional_embedding.normal_(0.0, scale)
            if isinstance(clone.proj, nn.Parameter):
                clone.proj.normal_(0.0, scale)
        return clone

    def forward(self, model, images, **kwargs):
        size = self.image_size(model)
        if tuple(images.shape[-2:]) != size:
            raise ValueError(f"open_clip VisionTransformer is built for {size[0]}x{size[1]} images, got "
                             f"{images.shape[-2]}x{images.shape[-1]}: give images of its size")
        return super().forward(model, images, **kwargs)


_FAMILIES: list[ViTFamily] = [TorchvisionViT(), OpenClipViT()]


def register_family(family: ViTFamily) -> ViTFamily:
    """Make every patchfield function read models ``family.matches``; registered families are asked first.

    Returns ``family`` (usable as a class decorator's result holder); registering it again moves it first.
    """
    if not isinstance(family, ViTFamily):
        raise TypeError(f"register_family takes a ViTFamily instance, got {type(family).__name__}")
    unregister_family(family)
    _FAMILIES.insert(0, family)
    return family


def unregister_family(family: ViTFamily) -> None:
    """Forget a family given to :func:`register_family` (nothing when it is not registered)."""
    if family in _FAMILIES:
        _FAMILIES.remove(family)


def family_of(model: nn.Module) -> ViTFamily | None:
    """The registered family that matches ``model`` (an unwrapped module), or ``None``."""
    return next((f for f in _FAMILIES if f.matches(model)), None)


#: Families whose attention is not global over one token grid, by the module (last dotted part) that
#: defines them in timm, Hugging Face transformers or torchvision: the reason patchfield refuses them.
_UNSUPPORTED = {
    "swin_transformer": "windowed attention (Swin attends within shifted local windows)",
    "swin_transformer_v2": "windowed attention (Swin attends within shifted local windows)",
    "swin_transformer_v2_cr": "windowed attention (Swin attends within shifted local windows)",
    "modeling_swin": "windowed attention (Swin attends within shifted local windows)",
    "modeling_swinv2": "windowed attention (Swin attends within shifted local windows)",
    "vision_transformer_sam": "windowed attention (SAM's image encoder attends within local windows)",
    "modeling_sam": "windowed attention (SAM's image encoder attends within local windows)",
    "pit": "pooled token grids (PiT pools the patch grid between stages)",
    "mvitv2": "pooled grids (MViT pools queries, keys and values)",
    "mvit": "pooled grids (MViT pools queries, keys and values)",
    "xcit": "channel attention (XCiT attends across feature channels, not tokens)",
    "cait": "class-attention layers (CaiT's last layers attend from the class token only)",
}


def refuse_unsupported(model: nn.Module) -> None:
    """``UnsupportedModelError`` naming the reason when ``model`` is a family whose attention is not global
    over one token grid (Swin, SAM, PiT, MViT, XCiT, CaiT), or a whole open_clip CLIP model."""
    module = type(model).__module__
    root = module.split(".")[0]
    if root in ("timm", "transformers", "torchvision"):
        reason = _UNSUPPORTED.get(module.rsplit(".", 1)[-1])
        if reason is not None:
            raise UnsupportedModelError(
                f"{type(model).__name__} is not supported: patchfield reads attention that is global over one "
                f"patch grid, and this family has {reason}")
    if root == "open_clip" and isinstance(getattr(model, "visual", None), nn.Module):
        raise UnsupportedModelError(f"{type(model).__name__} is a whole open_clip model: pass its image tower, "
                                    "model.visual (load_model('open_clip:NAME', weights) does)")
