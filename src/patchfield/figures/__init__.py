"""Figures of the paper as matplotlib figures built from patchfield's own objects.

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` on an Agg canvas (no
pyplot state); heat maps are overlaid on the image at full resolution. Batched objects take an
``index`` selecting the image. :func:`write_paper_figures` writes every figure of the paper for a
set of images (the pipeline behind ``patchfield figures`` and ``patchfield demo``).
"""

from .attention import (
    pair_attention,
    pair_attention_dataset,
    patch_mask,
    plot_head_uncertainty,
    plot_layer_attention,
    plot_pair_attention,
    plot_pair_attention_dataset,
    plot_uncertainty_rows,
    sample_pair,
)
from .basic import BASIC_FIGURES, write_basic_figures
from .fields import plot_responsive_field, plot_tendency_flow
from .flow import color_wheel, flow_to_color
from .maps import plot_dip, plot_field_size, plot_tendency_arrows, plot_uncertainty, plot_windows
from .paper import PAPER_FIGURES, PaperFigures, write_paper_figures
from .windows import plot_dip_betas, plot_global_vs_window, plot_indiscriminative
from .winft import plot_winft_windows, winft_windows

__all__ = [
    "BASIC_FIGURES",
    "PAPER_FIGURES",
    "PaperFigures",
    "color_wheel",
    "flow_to_color",
    "pair_attention",
    "pair_attention_dataset",
    "patch_mask",
    "plot_dip",
    "plot_dip_betas",
    "plot_field_size",
    "plot_global_vs_window",
    "plot_head_uncertainty",
    "plot_indiscriminative",
    "plot_layer_attention",
    "plot_pair_attention",
    "plot_pair_attention_dataset",
    "plot_responsive_field",
    "plot_tendency_arrows",
    "plot_tendency_flow",
    "plot_uncertainty",
    "plot_uncertainty_rows",
    "plot_windows",
    "plot_winft_windows",
    "sample_pair",
    "winft_windows",
    "write_basic_figures",
    "write_paper_figures",
]
