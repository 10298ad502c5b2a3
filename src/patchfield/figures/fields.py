"""Responsive fields: tendency as arrows and optical-flow colours, size as a heat map (Fig. 7, 11, 12)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..drawing import as_image, new_figure, pick, show_image, show_patch_map, to_numpy, upsample
from ..field import ResponsiveField
from .flow import draw_wheel_legend, flow_to_color
from .maps import draw_tendency_arrows

__all__ = ["draw_tendency_flow", "plot_responsive_field", "plot_tendency_flow"]


def draw_tendency_flow(ax, image: np.ndarray, field: ResponsiveField, index: int = 0, title: str | None = None,
                       blend: float = 0.75) -> None:
    """Colour every patch by its tendency ``R_p`` (Middlebury code) over the image at full resolution."""
    offset = to_numpy(pick(field.offset, index, 2)).astype(np.float64)
    colours = flow_to_color(offset[:, 0], offset[:, 1]).astype(np.float64)  # [N, 3]
    full = np.stack([upsample(colours[:, c], field.grid, image.shape[:2]) for c in range(3)], axis=-1)
    mixed = blend * full + (1 - blend) * image.astype(np.float64)
    show_image(ax, np.clip(mixed + 0.5, 0, 255).astype(np.uint8), title)


def plot_tendency_flow(image, field: ResponsiveField, index: int = 0) -> Figure:
    """Tendency of every patch's responsive field in the optical-flow colour code, with the colour wheel legend."""
    fig = new_figure(6.0, 3.8)
    ax0, ax1 = fig.subplots(1, 2, width_ratios=[2.2, 1])
    draw_tendency_flow(ax0, as_image(image), field, index, "responsive-field tendency (optical-flow colours)")
    draw_wheel_legend(ax1)
    return fig


def plot_responsive_field(image, field: ResponsiveField, index: int = 0) -> Figure:
    """Fig. 7: tendency as arrows, as optical-flow colours (with the wheel), and the field size ``|S_p|``."""
    img = as_image(image)
    fig = new_figure(13.0, 3.8)
    axes = fig.subplots(1, 4, width_ratios=[1, 1, 0.55, 1.15])
    draw_tendency_arrows(axes[0], img, field, index, "(a) tendency: arrows")
    draw_tendency_flow(axes[1], img, field, index, "(b) tendency: optical flow")
    draw_wheel_legend(axes[2], title="colour wheel")
    show_patch_map(axes[3], img, pick(field.size, index, 1), field.grid, title="(c) field size |S_p|",
                   cmap="magma", label="|S_p| (patches)")
    return fig
