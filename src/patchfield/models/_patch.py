"""In-place class swaps: how AWD-ViT and WinfT become (and stop being) a timm ViT.

A patched model keeps its object identity, parameters and ``state_dict`` keys; only its
class (and, for WinfT, the class of every attention module) is replaced by a subclass that
mixes in the new forward. :func:`remove_patch` restores the original classes. This is the
pattern of ToMe's ``tome/patch/timm.py``.

The swapped-in classes are made at run time, so they pickle by recipe (mixin and base class,
both importable): ``torch.save(model)`` and ``torch.load(path, weights_only=False)`` round-trip
patched models, also in a fresh process.
"""

from __future__ import annotations

import inspect

from torch import nn

from ..errors import UnsupportedModelError

__all__ = ["patched_kind", "remove_patch", "swap_class", "check_vit"]

_BASE_ATTR = "_patchfield_base_class"
_KIND_ATTR = "_patchfield_kind"
# Attributes the patches set on modules; removed again by remove_patch.
_EXTRA_ATTRS = (
    "winft_mode",
    "winft_num_prefix_tokens",
)
_CLASS_CACHE: dict[tuple[type, type], type] = {}


def _patched_class(mixin: type, base: type) -> type:
    """The class ``mixin`` + ``base`` (one per pair, made on first use)."""
    key = (mixin, base)
    if key not in _CLASS_CACHE:
        _CLASS_CACHE[key] = type(
            f"{mixin.__name__}{base.__name__}", (mixin, base),
            {"__module__": mixin.__module__, "__reduce_ex__": _reduce_ex},
        )
    return _CLASS_CACHE[key]


def _new_patched(mixin: type, base: type) -> nn.Module:
    """Unpickling: an empty instance of the patched class (its state is set afterwards)."""
    cls = _patched_class(mixin, base)
    return cls.__new__(cls)


def _reduce_ex(self: nn.Module, protocol: int):
    """Pickle a patched module as ``_new_patched(mixin, base)`` plus the usual module state."""
    reduced = object.__reduce_ex__(self, max(int(protocol), 2))
    mixin, base = type(self).__mro__[1], self.__dict__[_BASE_ATTR]
    return (_new_patched, (mixin, base), *reduced[2:])


def swap_class(module: nn.Module, mixin: type, kind: str) -> None:
    """Give ``module`` the class ``type(mixin.__name__ + Base, (mixin, Base))``, remembering ``Base``."""
    base = type(module)
    setattr(module, _BASE_ATTR, base)
    setattr(module, _KIND_ATTR, kind)
    module.__class__ = _patched_class(mixin, base)


def patched_kind(model: nn.Module) -> str | None:
    """``"awd"`` or ``"winft"`` for a model patched by :mod:`patchfield.models`, else ``None``."""
    return getattr(model, _KIND_ATTR, None) if hasattr(model, _BASE_ATTR) else None


def remove_patch(model: nn.Module) -> nn.Module:
    """Turn an AWD-ViT or WinfT back into the plain timm model it was made from, in place.

    Weights are untouched; calling it on an unpatched model does nothing.

    Returns:
        The same ``model`` object.
    """
    for module in model.modules():
        base = module.__dict__.pop(_BASE_ATTR, None)
        if base is not None:
            module.__class__ = base
            module.__dict__.pop(_KIND_ATTR, None)
        for name in _EXTRA_ATTRS:
            module.__dict__.pop(name, None)
    return model


def check_vit(model: nn.Module, what: str) -> None:
    """Raise ``TypeError`` unless ``model`` is a timm ``VisionTransformer`` (or subclass) with plain blocks."""
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise UnsupportedModelError(
            f"{what} patches timm VisionTransformer models (ViT, DeiT, register-token ViTs); "
            f"got {type(model).__name__}. Build the model with timm.create_model('vit_...')."
        )
    if not isinstance(model.blocks, nn.Sequential) or len(model.blocks) == 0:
        raise UnsupportedModelError(f"{type(model).__name__}: expected a non-empty nn.Sequential of blocks")
    params = inspect.signature(type(model.blocks[0]).forward).parameters
    if "attn_mask" not in params:
        raise UnsupportedModelError(
            f"{type(model.blocks[0]).__name__}.forward takes no attn_mask: this timm version is too old "
            "for patchfield.models: upgrade timm (patchfield is tested with 1.0.31)"
        )
