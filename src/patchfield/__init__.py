"""patchfield: visualize, quantify and train on the patch interactions of Vision Transformers.

Implements "Visualizing and Understanding Patch Interactions in Vision Transformer"
(Ma et al.); ``docs/spec.md`` fixes every quantity's meaning.

The public names below are imported on first use (PEP 562), so ``import patchfield`` and the
command line's ``--help`` do not pay for timm, transformers or matplotlib; ``from patchfield
import analyze`` and ``patchfield.analyze`` work as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__ as __version__

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "Analysis": "analysis",
    "analyze": "analysis",
    "analyze_map": "analysis",
    "awd_forward_kwargs": "analysis",
    "AttentionMaps": "capture",
    "UncertaintyCapture": "capture",
    "attention_hooks": "capture",
    "block_output_norms": "capture",
    "capture_attention": "capture",
    "capture_uncertainty": "capture",
    "find_attention_modules": "capture",
    "ClaimsReport": "claims",
    "measure_claims": "claims",
    "column_variance": "dip",
    "indiscriminative_patches": "dip",
    "patch_keep_mask": "dip",
    "FieldCode": "encoding",
    "decode_field": "encoding",
    "encode_field": "encoding",
    "explore": "explorer",
    "ViTFamily": "families",
    "register_family": "families",
    "ResponsiveField": "field",
    "responsive_field": "field",
    "Grid": "grid",
    "count_interactions": "interactions",
    "load_model": "loading",
    "load_state_dict": "loading",
    "KINDS": "kinds",
    "Kind": "kinds",
    "kind_by_name": "kinds",
    "apply_awd": "models",
    "apply_winft": "models",
    "remove_patch": "models",
    "window_bce_loss": "models",
    "HeadStats": "stats",
    "head_statistics": "stats",
    "UncertaintyAccumulator": "uncertainty",
    "interaction_uncertainty": "uncertainty",
    "Windows": "windows",
    "adaptive_windows": "windows",
}

__all__ = [
    "Analysis",
    "AttentionMaps",
    "ClaimsReport",
    "FieldCode",
    "Grid",
    "HeadStats",
    "KINDS",
    "Kind",
    "ResponsiveField",
    "UncertaintyAccumulator",
    "UncertaintyCapture",
    "ViTFamily",
    "Windows",
    "adaptive_windows",
    "apply_awd",
    "apply_winft",
    "analyze",
    "analyze_map",
    "attention_hooks",
    "awd_forward_kwargs",
    "block_output_norms",
    "capture_attention",
    "capture_uncertainty",
    "column_variance",
    "count_interactions",
    "decode_field",
    "encode_field",
    "explore",
    "find_attention_modules",
    "head_statistics",
    "indiscriminative_patches",
    "interaction_uncertainty",
    "kind_by_name",
    "load_model",
    "load_state_dict",
    "measure_claims",
    "patch_keep_mask",
    "register_family",
    "remove_patch",
    "responsive_field",
    "window_bce_loss",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .analysis import Analysis, analyze, analyze_map, awd_forward_kwargs
    from .capture import (
        AttentionMaps,
        UncertaintyCapture,
        attention_hooks,
        block_output_norms,
        capture_attention,
        capture_uncertainty,
        find_attention_modules,
    )
    from .claims import ClaimsReport, measure_claims
    from .dip import column_variance, indiscriminative_patches, patch_keep_mask
    from .encoding import FieldCode, decode_field, encode_field
    from .explorer import explore
    from .families import ViTFamily, register_family
    from .field import ResponsiveField, responsive_field
    from .grid import Grid
    from .interactions import count_interactions
    from .kinds import KINDS, Kind, kind_by_name
    from .loading import load_model, load_state_dict
    from .models import apply_awd, apply_winft, remove_patch, window_bce_loss
    from .stats import HeadStats, head_statistics
    from .uncertainty import UncertaintyAccumulator, interaction_uncertainty
    from .windows import Windows, adaptive_windows
