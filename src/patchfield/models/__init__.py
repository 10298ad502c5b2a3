"""The paper's models as in-place patches of timm Vision Transformers (docs/spec.md §4, §7, §8).

- :func:`apply_awd`: AWD-ViT (and AWD+DIP): attention restricted to each image's responsive
  field, ``model(x, field_mask=..., dropped=...)``.
- :func:`apply_winft`: WinfT, window-free attention predicting its own windows, in ``"paper"``
  or ``"restrict"`` mode; ``model(x, return_window_logits=True, return_windows=True, return_interactions=True)``.
- :func:`window_bce_loss`: ``L_BCE`` of Eq. 11.
- :func:`remove_patch`: back to the plain timm model.

Importing this package registers the timm names in :data:`REGISTERED_NAMES`
(``awd_vit_base_patch16_224``, ``winft_base_patch16_224``, ...).
"""

from ._patch import patched_kind, remove_patch
from .awd import apply_awd, awd_attention_mask
from .loss import window_bce_loss
from .registry import AWD_NAMES, REGISTERED_NAMES, WINFT_NAMES
from .winft import MODES, apply_winft, head_mean, window_mask

__all__ = [
    "AWD_NAMES",
    "MODES",
    "REGISTERED_NAMES",
    "WINFT_NAMES",
    "apply_awd",
    "apply_winft",
    "awd_attention_mask",
    "head_mean",
    "patched_kind",
    "remove_patch",
    "window_bce_loss",
    "window_mask",
]
