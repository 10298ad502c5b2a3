"""Figures of the paper as matplotlib figures built from patchfield's own objects."""

from .basic import BASIC_FIGURES, write_basic_figures
from .maps import plot_dip, plot_field_size, plot_tendency_arrows, plot_uncertainty, plot_windows

__all__ = [
    "BASIC_FIGURES",
    "plot_dip",
    "plot_field_size",
    "plot_tendency_arrows",
    "plot_uncertainty",
    "plot_windows",
    "write_basic_figures",
]
