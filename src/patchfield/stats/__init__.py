"""Per-head attention statistics and high-norm artefact tokens, with their overlap with DIP's ``D``.

- :func:`head_statistics`: one forward pass → mean attention distance and entropy per layer and
  head, class-token attention per layer, patch-token norms at every block, artefact tokens.
- :mod:`.heads`, :mod:`.mixture`, :mod:`.ranks`: the formulas on plain tensors.
- :mod:`.figures` (imported on demand: matplotlib): the figures of ``patchfield stats``.
"""

from .blocks import block_output_norms, has_class_token, patch_size_of, transformer_blocks
from .collect import HeadStats, artefact_overlap, head_statistics, summarize_images
from .heads import (
    attention_entropy,
    class_token_attention,
    head_reductions,
    mean_attention_distance,
    patch_distances,
    renormalized_patch_rows,
)
from .mixture import ArtefactFit, artefact_tokens, fit_two_gaussians
from .ranks import average_ranks, spearman

__all__ = [
    "ArtefactFit",
    "HeadStats",
    "artefact_overlap",
    "artefact_tokens",
    "attention_entropy",
    "average_ranks",
    "block_output_norms",
    "class_token_attention",
    "fit_two_gaussians",
    "has_class_token",
    "head_reductions",
    "head_statistics",
    "mean_attention_distance",
    "patch_distances",
    "patch_size_of",
    "renormalized_patch_rows",
    "spearman",
    "summarize_images",
    "transformer_blocks",
]
