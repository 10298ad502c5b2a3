"""Single-panel figures of one image's analysis: ``U``, windows, DIP, field size and tendency."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..drawing import (
    as_image,
    new_figure,
    patch_boxes,
    patch_centres,
    pick,
    show_image,
    show_patch_map,
    to_numpy,
    upsample,
)
from ..field import ResponsiveField
from ..grid import Grid
from ..windows import Windows

__all__ = [
    "default_patches",
    "draw_dip",
    "draw_tendency_arrows",
    "draw_uncertainty",
    "draw_windows",
    "plot_dip",
    "plot_field_size",
    "plot_tendency_arrows",
    "plot_uncertainty",
    "plot_windows",
]

_COLOURS = ["#00e5ff", "#ffea00", "#ff4081", "#76ff03", "#ff9100", "#d500f9", "#ffffff", "#2979ff"]


def default_patches(grid: Grid, count: int = 4) -> list[int]:
    """``count`` patches spread over the grid: evenly spaced rows and columns of its interior.

    >>> default_patches(Grid(4, 4), 4)
    [5, 6, 9, 10]
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    side = int(np.ceil(np.sqrt(count)))
    ys = np.floor((np.arange(side) + 1) * grid.height / (side + 1)).astype(int).clip(0, grid.height - 1)
    xs = np.floor((np.arange(side) + 1) * grid.width / (side + 1)).astype(int).clip(0, grid.width - 1)
    chosen = []
    for y in ys:
        for x in xs:
            p = int(y * grid.width + x)
            if p not in chosen:
                chosen.append(p)
    return chosen[:count]


def _check_patches(patches: Sequence[int], grid: Grid) -> list[int]:
    out = [int(p) for p in patches]
    bad = [p for p in out if not 0 <= p < grid.n]
    if bad:
        raise ValueError(f"patch indices {bad} are outside the {grid.height}x{grid.width} grid (0..{grid.n - 1})")
    return out


def draw_uncertainty(ax: Axes, U: torch.Tensor, title: str = "uncertainty map U") -> None:
    """Draw one ``[N, N]`` map ``U`` with a colour bar (rows: patch p, columns: patch i)."""
    u = to_numpy(U).astype(np.float64)
    im = ax.imshow(u, cmap="viridis", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("patch i (column u'_i)", fontsize=8)
    ax.set_ylabel("patch p (row u_p)", fontsize=8)
    ax.tick_params(labelsize=7)
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    cb.set_label("U[p, i]", fontsize=8)
    cb.ax.tick_params(labelsize=7)


def plot_uncertainty(U: torch.Tensor, index: int = 0) -> Figure:
    """The ``N × N`` uncertainty map ``U`` of one image (a batch ``[B, N, N]`` or one map ``[N, N]``)."""
    u = pick(U, index, 2)
    fig = new_figure(4.6, 4.0)
    draw_uncertainty(fig.add_subplot(), u, f"uncertainty map U (N = {u.shape[-1]})")
    return fig


def draw_windows(ax: Axes, image: np.ndarray, windows: Windows, patches: Sequence[int], title: str | None = None):
    """Draw the windows of ``patches`` (one image's :class:`Windows`, ``[N]`` bounds) on the image."""
    show_image(ax, image, title)
    bounds = to_numpy(windows.bounds())
    size = image.shape[:2]
    handles = []
    for k, p in enumerate(patches):
        colour = _COLOURS[k % len(_COLOURS)]
        patch_boxes(ax, windows.grid, size, bounds[p], color=colour, linewidth=2.0)
        x, y = p % windows.grid.width, p // windows.grid.width
        patch_boxes(ax, windows.grid, size, [x, x, y, y], color=colour, fill=True, alpha=0.55, linewidth=1.0)
        handles.append(Patch(facecolor=colour, edgecolor=colour, label=f"patch {p}: {int(windows.area()[p])} cells"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)


def plot_windows(image, windows: Windows, patches: Sequence[int] | None = None, index: int = 0) -> Figure:
    """Adaptive windows of a few patches drawn on the image (filled cell: the patch; box: its window)."""
    w = windows[index] if windows.left.dim() == 2 else windows
    img = as_image(image)
    chosen = _check_patches(patches if patches is not None else default_patches(w.grid), w.grid)
    fig = new_figure(5.6, 4.0)
    draw_windows(fig.add_subplot(), img, w, chosen, f"adaptive windows ({len(chosen)} patches)")
    return fig


def draw_dip(ax: Axes, image: np.ndarray, dropped: torch.Tensor, grid: Grid, title: str | None = None) -> None:
    """Shade the patches of ``D`` (one image, boolean ``[N]``) on the image."""
    show_image(ax, image, title)
    d = upsample(to_numpy(dropped).astype(float), grid, image.shape[:2])
    shade = np.zeros((*d.shape, 4))
    shade[..., 3] = 0.7 * d
    ax.imshow(shade, interpolation="nearest")
    x, y = (to_numpy(c) for c in grid.coords())
    hit = to_numpy(dropped).astype(bool)
    cells = np.stack([x[hit], x[hit], y[hit], y[hit]], axis=-1)
    patch_boxes(ax, grid, image.shape[:2], cells, color="#ff1744", linewidth=0.6, alpha=0.8)
    count = int(to_numpy(dropped).sum())
    key = Patch(facecolor="black", edgecolor="#ff1744", alpha=0.7, label=f"D: {count} of {grid.n} patches")
    ax.legend(handles=[key], loc="upper left", bbox_to_anchor=(0.0, -0.01), fontsize=7, frameon=False)


def plot_dip(image, dropped: torch.Tensor, grid: Grid, index: int = 0, beta: float | None = None) -> Figure:
    """Indiscriminative patches ``D`` darkened on the image."""
    d = pick(dropped, index, 1)
    grid.check(d.shape[-1], "dropped")
    fig = new_figure(4.0, 4.3)
    title = "indiscriminative patches" + (f" (beta = {beta:g})" if beta is not None else "")
    draw_dip(fig.add_subplot(), as_image(image), d, grid, title)
    return fig


def plot_field_size(image, field: ResponsiveField, index: int = 0) -> Figure:
    """Responsive-field size ``|S_p|`` as a heat map on the image."""
    size = pick(field.size, index, 1)
    fig = new_figure(4.6, 4.0)
    show_patch_map(fig.add_subplot(), as_image(image), size, field.grid, title="responsive-field size |S_p|",
                   cmap="magma", label="|S_p| (patches)")
    return fig


def draw_tendency_arrows(ax: Axes, image: np.ndarray, field: ResponsiveField, index: int = 0,
                         title: str | None = None) -> None:
    """One arrow per patch along ``R_p`` (x right, y down), length scaled by the magnitude."""
    show_image(ax, image, title)
    g = field.grid
    offset = to_numpy(pick(field.offset, index, 2)).astype(np.float64)
    cx, cy = patch_centres(g, image.shape[:2])
    cell = min(image.shape[0] / g.height, image.shape[1] / g.width)
    longest = max(float(np.abs(offset).max()), 1e-12)
    scale = 0.9 * cell / longest
    dx, dy = offset[:, 0] * scale, offset[:, 1] * scale
    moving = np.hypot(dx, dy) > 0
    ax.quiver(cx[moving], cy[moving], dx[moving], dy[moving], angles="xy", scale_units="xy", scale=1.0,
              color="#ffea00", width=0.006, headwidth=3.5, edgecolor="black", linewidth=0.3)
    ax.plot(cx[~moving], cy[~moving], "o", color="white", markersize=2, markeredgecolor="black", markeredgewidth=0.3)
    ax.legend(handles=[
        Line2D([], [], color="#ffea00", marker=r"$\rightarrow$", linestyle="", markersize=9,
               label=f"R_p (longest {longest:.0f} patches)"),
        Line2D([], [], color="white", marker="o", markeredgecolor="black", linestyle="", markersize=4,
               label="balanced (R_p = 0)"),
    ], loc="upper left", bbox_to_anchor=(0.0, -0.01), fontsize=7, frameon=False, ncol=2)


def plot_tendency_arrows(image, field: ResponsiveField, index: int = 0) -> Figure:
    """Responsive-field tendency ``R_p`` as arrows on the image (Fig. 7, left)."""
    fig = new_figure(4.0, 4.4)
    draw_tendency_arrows(fig.add_subplot(), as_image(image), field, index, "responsive-field tendency")
    return fig
