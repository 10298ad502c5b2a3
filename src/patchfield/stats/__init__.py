"""Per-head attention statistics and high-norm artefact tokens, with their overlap with DIP's ``D``.

- :func:`head_statistics`: one forward pass → mean attention distance and entropy per layer and
  head, class-token attention per layer, patch-token norms at every block, artefact tokens.
- :mod:`.heads`, :mod:`.mixture`, :mod:`.ranks`: the formulas on plain tensors.
- :mod:`patchfield.figures.stats`: the figures of ``patchfield stats``.
"""

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
    "class_token_attention",
    "fit_two_gaussians",
    "head_reductions",
    "head_statistics",
    "mean_attention_distance",
    "patch_distances",
    "renormalized_patch_rows",
    "spearman",
    "summarize_images",
]
