"""timm names for the paper's models: ``timm.create_model("winft_base_patch16_224", ...)``.

Each name builds the plain timm ViT of the same configuration (so any keyword a ViT takes,
``img_size``, ``num_classes``, ``depth``..., works) and patches it with :func:`apply_awd` or
:func:`apply_winft`; WinfT names also take ``winft_mode="paper"|"restrict"``. Weights are plain
ViT checkpoints from local files only::

    timm.create_model("winft_base_patch16_224", checkpoint_path="vit_b16.pth")              # strict
    timm.create_model("winft_base_patch16_384", pretrained=True,
                      pretrained_cfg_overlay=dict(file="vit_b16_224.safetensors"))     # resamples pos_embed
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.models import register_model
from torch import nn

from .awd import apply_awd
from .winft import apply_winft

__all__ = ["REGISTERED_NAMES", "AWD_NAMES", "WINFT_NAMES"]

_BASES = (
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_base_patch16_384",
    "vit_base_patch32_224",
    "vit_base_patch32_384",
)


def _has_local_file(kwargs: dict[str, Any]) -> bool:
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    cfg = kwargs.get("pretrained_cfg")
    cfg_file = cfg.get("file") if isinstance(cfg, dict) else getattr(cfg, "file", None)
    return bool(overlay.get("file") or cfg_file)


def _entrypoint(kind: str, base: str) -> Callable[..., nn.Module]:
    name = ("awd_" if kind == "awd" else "winft_") + (base if kind == "awd" else base[len("vit_"):])

    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        from timm.models import vision_transformer

        mode = kwargs.pop("winft_mode", "paper") if kind == "winft" else None
        if kind == "awd" and "winft_mode" in kwargs:
            raise ValueError(f"{name} is an AWD-ViT and takes no winft_mode")
        if pretrained and not _has_local_file(kwargs):
            raise ValueError(
                f"{name}: patchfield never downloads weights; pass pretrained_cfg_overlay=dict(file=PATH) "
                "with a local plain-ViT checkpoint, or checkpoint_path=PATH"
            )
        model = getattr(vision_transformer, base)(pretrained=pretrained, **kwargs)
        return apply_awd(model) if kind == "awd" else apply_winft(model, mode=mode)

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"{'AWD-ViT' if kind == 'awd' else 'WinfT'} on timm's ``{base}`` (plain-ViT weights load as is)."
    return create


AWD_NAMES: tuple[str, ...] = ()
WINFT_NAMES: tuple[str, ...] = ()
for _kind in ("awd", "winft"):
    for _base in _BASES:
        _fn = _entrypoint(_kind, _base)
        globals()[_fn.__name__] = _fn
        register_model(_fn)
        if _kind == "awd":
            AWD_NAMES += (_fn.__name__,)
        else:
            WINFT_NAMES += (_fn.__name__,)
REGISTERED_NAMES: tuple[str, ...] = AWD_NAMES + WINFT_NAMES
