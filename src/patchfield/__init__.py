"""patchfield: visualize, quantify and train on the patch interactions of Vision Transformers.

Implements "Visualizing and Understanding Patch Interactions in Vision Transformer"
(Ma et al.); ``docs/spec.md`` fixes every quantity's meaning.
"""

from ._version import __version__ as __version__
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
from .field import ResponsiveField, responsive_field
from .grid import Grid
from .interactions import count_interactions
from .loading import load_model, load_state_dict
from .models import apply_awd, apply_winft, remove_patch, window_bce_loss
from .stats import HeadStats, head_statistics
from .uncertainty import UncertaintyAccumulator, interaction_uncertainty
from .windows import Windows, adaptive_windows

__all__ = [
    "Analysis",
    "AttentionMaps",
    "ClaimsReport",
    "FieldCode",
    "Grid",
    "HeadStats",
    "ResponsiveField",
    "UncertaintyAccumulator",
    "UncertaintyCapture",
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
    "load_model",
    "load_state_dict",
    "measure_claims",
    "patch_keep_mask",
    "remove_patch",
    "responsive_field",
    "window_bce_loss",
]
