"""What patchfield needs to know about a model, in one place (timm ViTs, Hugging Face ViTs, and the
families of :mod:`patchfield.families`: torchvision, open_clip and a user's own ViT).

- :func:`find_attention_modules`: the model family and the attention modules capture reads;
- :func:`model_grid`: the patch grid for the configured input size or a given one;
- :func:`num_prefix_tokens`: class, distillation and register tokens (``P``);
- :func:`input_spec`: input size, normalisation, crop ratio and interpolation the model expects;
- :func:`is_classifier`: whether the model's output is class logits (so an argmax is a prediction);
- :func:`unwrap`: the module inside a ``DistributedDataParallel``/``DataParallel`` wrapper.

Every other module asks these functions; none re-derives them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .errors import UnsupportedModelError
from .families import IMAGENET_MEAN, IMAGENET_STD, ViTFamily, family_of, refuse_unsupported
from .grid import Grid

__all__ = [
    "find_attention_modules",
    "has_class_token",
    "model_family",
    "input_spec",
    "is_classifier",
    "is_huggingface",
    "model_grid",
    "num_prefix_tokens",
    "patch_size_of",
    "required_forward_kwargs",
    "transformer_blocks",
    "unwrap",
]

#: Class attribute by which a patched model names the forward keyword arguments without which
#: its forward is not the model's own computation (an AWD-ViT: ``("field_mask",)``).
REQUIRED_KWARGS_ATTR = "patchfield_required_kwargs"

#: Attribute a loader sets to ``True`` on a model whose head projects to an embedding (CLIP's ``proj`` loaded
#: into a timm CLIP ViT), so its output is not class logits.
EMBEDDING_HEAD_ATTR = "patchfield_embedding_head"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper (or the model itself)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def is_huggingface(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face ``transformers`` model."""
    return any(c.__module__.startswith("transformers.") for c in type(unwrap(model)).__mro__)


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def model_family(model: nn.Module) -> ViTFamily | None:
    """The :class:`patchfield.families.ViTFamily` that reads ``model`` (torchvision, open_clip, a registered
    family), or ``None`` for timm and Hugging Face models.

    Raises:
        UnsupportedModelError: a family whose attention is not global over one token grid (Swin, SAM, PiT,
            MViT, XCiT, CaiT); the message names the reason.
    """
    model = unwrap(model)
    refuse_unsupported(model)
    return family_of(model)


def find_attention_modules(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """Return the model family (``"timm"``, ``"huggingface"``, ``"torchvision"``, ``"open_clip"`` or a
    registered family's name) and its attention modules in order.

    Raises:
        TypeError: when no attention this library can read is found; the message names the class.
    """
    model = unwrap(model)
    family = model_family(model)
    if family is not None:
        return family.name, list(family.attention_modules(model))
    if is_huggingface(model):
        inner = [m for m in model.modules() if type(m).__name__.endswith("SelfAttention")]
        modules = inner or [
            m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "config")
        ]
        if modules and hasattr(getattr(model, "config", None), "patch_size"):
            return "huggingface", modules
        if isinstance(getattr(model, "vision_model", None), nn.Module):
            raise UnsupportedModelError(f"{type(model).__name__} holds an image and a text tower: pass its image "
                                        "tower, model.vision_model (load_model on its folder does)")
        raise UnsupportedModelError(
            f"cannot capture attention from {type(model).__name__}: no ViT-style attention modules found. "
            "Supported Hugging Face models: ViTModel, ViTForImageClassification and kin."
        )
    root = getattr(model, "blocks", model)  # not an attention-pooling head
    modules = [
        m for m in root.modules()
        if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)
    ]
    if modules and hasattr(model, "patch_embed"):
        return "timm", modules
    raise UnsupportedModelError(
        f"cannot capture attention from {type(model).__name__}: it is neither a timm VisionTransformer-family "
        "model (attention modules with `fused_attn` and `attn_drop`, and a `patch_embed`) nor a Hugging Face ViT"
    )


def model_grid(model: nn.Module, image_size: tuple[int, int] | int | None = None) -> Grid:
    """The patch grid ``(gh, gw)`` the model sees for an input of ``image_size`` (its configured size by default).

    timm models with ``dynamic_img_size``/``dynamic_img_pad`` use timm's own rule; otherwise the
    grid is ``size // patch`` per side.

    Raises:
        ValueError: the model states neither a patch embedding nor a Hugging Face config.
    """
    model = unwrap(model)
    family = model_family(model)
    if family is not None:
        return family.grid(model, None if image_size is None else _pair(image_size))
    pe = getattr(model, "patch_embed", None)
    if pe is not None and image_size is None and getattr(pe, "grid_size", None) is not None:
        return Grid(int(pe.grid_size[0]), int(pe.grid_size[1]))
    if pe is not None and getattr(pe, "patch_size", None) is not None:
        size = _pair(pe.img_size if image_size is None else image_size)
        dynamic = getattr(pe, "dynamic_img_size", False) or getattr(pe, "dynamic_img_pad", False)
        if dynamic and hasattr(pe, "dynamic_feat_size"):
            return Grid(*(int(g) for g in pe.dynamic_feat_size(size)))
        ph, pw = _pair(pe.patch_size)
        return Grid(size[0] // ph, size[1] // pw)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "image_size") and hasattr(config, "patch_size"):
        size = _pair(config.image_size if image_size is None else image_size)
        ph, pw = _pair(config.patch_size)
        return Grid(size[0] // ph, size[1] // pw)
    raise ValueError(f"cannot tell the patch grid of {type(model).__name__}: not a timm or Hugging Face ViT")


def num_prefix_tokens(model: nn.Module) -> int:
    """``P``: the class, distillation and register tokens before the patches."""
    model = unwrap(model)
    family = model_family(model)
    if family is not None:
        return int(family.num_prefix_tokens(model))
    declared = getattr(model, "num_prefix_tokens", None)
    if declared is not None:
        return int(declared)
    embeddings = next((m for name, m in model.named_modules() if name.endswith("embeddings")), None)
    if embeddings is None:
        raise ValueError(f"cannot tell the prefix tokens of {type(model).__name__}: not a timm or Hugging Face ViT")
    count = 0
    for name in ("cls_token", "class_embedding", "distillation_token", "register_tokens"):
        token = getattr(embeddings, name, None)
        if token is not None:
            count += int(token.shape[1]) if token.dim() == 3 else 1
    return count


def input_spec(model: nn.Module) -> dict[str, Any]:
    """What the model expects as input: ``{"size": (H, W), "mean", "std", "crop_pct", "interpolation"}``.

    timm: ``size`` is the patch embedding's configured image size (the size the model was built
    for, which ``pretrained_cfg`` does not follow when ``img_size`` is overridden); mean, std,
    crop ratio and interpolation come from ``timm.data.resolve_data_config`` (the model's
    ``pretrained_cfg``, ImageNet defaults without one). Hugging Face ViTs: ``config.image_size``,
    the ViT image processor's mean/std 0.5, no crop (``crop_pct`` 1.0), bilinear. torchvision, open_clip and
    registered families: their :meth:`~patchfield.families.ViTFamily.input_spec` (docs/families.md).
    """
    model = unwrap(model)
    family = model_family(model)
    if family is not None:
        return dict(family.input_spec(model))
    pe = getattr(model, "patch_embed", None)
    if pe is not None and getattr(pe, "img_size", None) is not None:
        from timm.data import resolve_data_config

        cfg = resolve_data_config(model=model)
        return {
            "size": _pair(pe.img_size),
            "mean": tuple(float(v) for v in cfg["mean"]),
            "std": tuple(float(v) for v in cfg["std"]),
            "crop_pct": float(cfg["crop_pct"]),
            "interpolation": str(cfg["interpolation"]),
        }
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "image_size"):
        return {
            "size": _pair(config.image_size), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
            "crop_pct": 1.0, "interpolation": "bilinear",
        }
    return {"size": (224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": 0.875,
            "interpolation": "bicubic"}


def required_forward_kwargs(model: nn.Module) -> tuple[str, ...]:
    """Forward keyword arguments the model must be given for its forward to be its own computation.

    An AWD-ViT called without ``field_mask`` runs global attention, a forward it never runs in
    training or evaluation; such models name these arguments in ``patchfield_required_kwargs``.
    """
    return tuple(getattr(unwrap(model), REQUIRED_KWARGS_ATTR, ()))


def is_classifier(model: nn.Module) -> bool:
    """Whether the model ends in a classifier head, so the argmax of its output is a predicted class.

    timm: ``num_classes > 0`` and a head that is not ``nn.Identity``. Hugging Face: a ``classifier``
    module that is not ``nn.Identity`` (``ViTForImageClassification``; ``ViTModel`` has none), or DeiT's
    ``cls_classifier`` (the distilled classifier). torchvision: a ``heads.head`` linear layer. open_clip image
    towers and timm CLIP ViTs holding CLIP's projection (marked by the loader) are not classifiers.
    """
    model = unwrap(model)
    family = model_family(model)
    if family is not None:
        return bool(family.is_classifier(model))
    if getattr(model, EMBEDDING_HEAD_ATTR, False):
        return False
    if is_huggingface(model):
        head = getattr(model, "classifier", getattr(model, "cls_classifier", None))
        return isinstance(head, nn.Module) and not isinstance(head, nn.Identity)
    if int(getattr(model, "num_classes", 0) or 0) <= 0:
        return False
    head = getattr(model, "head", None)
    return not isinstance(head, nn.Identity)


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's transformer blocks in order (timm ``model.blocks``; Hugging Face ViT layers).

    Raises:
        TypeError: no block list is found; the message names the class.
    """
    model = unwrap(model)
    family = model_family(model)
    if family is not None:
        return list(family.blocks(model))
    if isinstance(getattr(model, "blocks", None), nn.Module):
        return list(model.blocks)
    base = getattr(model, "vit", model)
    encoder = getattr(base, "encoder", None)
    for blocks in (getattr(encoder, "layer", None), getattr(base, "layers", None)):
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return list(blocks)
    if is_huggingface(model):  # DeiT, BEiT, CLIP, SigLIP ...: the layer list holding one attention module each
        attention = find_attention_modules(model)[1]
        for blocks in (m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == len(attention)):
            if all(any(a is sub for sub in block.modules()) for block, a in zip(blocks, attention)):
                return list(blocks)
    raise UnsupportedModelError(
        f"cannot find the transformer blocks of {type(model).__name__}: expected timm `model.blocks` or a "
        "Hugging Face ViT's `vit.encoder.layer` / `vit.layers`"
    )


def patch_size_of(model: nn.Module) -> tuple[int, int] | None:
    """``(ph, pw)`` in pixels of the model input, or ``None`` when the model does not say."""
    model = unwrap(model)
    family = model_family(model)
    if family is not None:
        return _pair(family.patch_size(model))
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "patch_size", None)
    if size is None:
        size = getattr(getattr(model, "config", None), "patch_size", None)
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def has_class_token(model: nn.Module) -> bool:
    """Whether token 0 is a class token (timm: ``cls_token``; Hugging Face: a class embedding, which SigLIP lacks;
    torchvision and open_clip: always)."""
    model = unwrap(model)
    family = model_family(model)
    if family is not None:
        return bool(family.has_class_token(model))
    if hasattr(model, "patch_embed"):
        return getattr(model, "cls_token", None) is not None
    return getattr(model, "config", None) is not None and num_prefix_tokens(model) > 0
