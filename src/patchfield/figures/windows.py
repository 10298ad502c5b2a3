"""Windows and indiscriminative patches: global vs adaptive window (Fig. 4), ``U`` and DIP (Fig. 5, Fig. 6)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..dip import column_variance, indiscriminative_patches
from ..drawing import as_image, new_figure, patch_boxes, pick, to_numpy
from ..grid import Grid, round_half_up
from ..windows import Windows
from .maps import _check_patches, draw_dip, draw_uncertainty

__all__ = ["plot_dip_betas", "plot_global_vs_window", "plot_indiscriminative"]


def plot_global_vs_window(image, windows: Windows, patch: int | None = None, index: int = 0) -> Figure:
    """Fig. 4: global self-attention (every patch) vs the adaptive window of one patch.

    Green: the current patch; yellow: the patches it interacts with.
    """
    w = windows[index] if windows.left.dim() == 2 else windows
    g = w.grid
    p = _check_patches([patch if patch is not None else g.n // 2 + g.width // 2], g)[0]
    img = as_image(image)
    size = img.shape[:2]
    x, y = p % g.width, p // g.width
    bounds = to_numpy(w.bounds()[p]).tolist()
    fig = new_figure(7.0, 3.8)
    axes = fig.subplots(1, 2)
    panels = (
        (axes[0], [0, g.width - 1, 0, g.height - 1], f"(a) global attention: {g.n} patches"),
        (axes[1], bounds, f"(c) adaptive window: {int(w.area()[p])} patches"),
    )
    for ax, box, title in panels:
        ax.imshow(img, interpolation="nearest")
        patch_boxes(ax, g, size, box, color="#ffea00", fill=True, alpha=0.4, linewidth=0)
        patch_boxes(ax, g, size, box, color="#ffea00", linewidth=2)
        patch_boxes(ax, g, size, [x, x, y, y], color="#00c853", fill=True, alpha=0.9, linewidth=1)
        _grid_lines(ax, g, size)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=[Patch(color="#00c853", label=f"current patch {p}"),
                        Patch(color="#ffea00", alpha=0.6, label="interaction range")],
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def _grid_lines(ax, grid: Grid, size) -> None:
    h, w = size
    for c in range(1, grid.width):
        ax.axvline(c * w / grid.width - 0.5, color="white", linewidth=0.3, alpha=0.6)
    for r in range(1, grid.height):
        ax.axhline(r * h / grid.height - 0.5, color="white", linewidth=0.3, alpha=0.6)


def plot_indiscriminative(U: torch.Tensor, image, grid: Grid, beta: float = 0.2, index: int = 0) -> Figure:
    """Fig. 5: (a) ``U`` with the columns of ``D`` boxed, (b) sorted column variances, (c) ``D`` on the image."""
    u = pick(U, index, 2)
    grid.check(u.shape[-1], "U")
    dropped = indiscriminative_patches(u, beta)
    var = to_numpy(column_variance(u)).astype(np.float64)
    count = round_half_up(beta * grid.n)
    fig = new_figure(12.0, 3.9)
    ax0, ax1, ax2 = fig.subplots(1, 3, width_ratios=[1.15, 1.2, 1])
    draw_uncertainty(ax0, u, "(a) uncertainty map U")
    n = grid.n
    for i in torch.nonzero(dropped).flatten().tolist():
        ax0.add_patch(Rectangle((i - 0.5, -0.5), 1, n, fill=False, edgecolor="red", linewidth=0.8))
    ax0.legend(handles=[Patch(fill=False, edgecolor="red", label="columns of D")], loc="upper left",
               bbox_to_anchor=(0.0, -0.12), fontsize=7, frameon=False)
    order = np.argsort(var, kind="stable")
    ranks = np.arange(n)
    ax1.plot(ranks, var[order], color="#37474f", linewidth=1.2, label="variance of u'_p")
    ax1.scatter(ranks[:count], var[order][:count], color="black", s=8, zorder=3, label=f"D: lowest {count}")
    if 0 < count < n:
        ax1.axvline(count - 0.5, color="red", linestyle="--", linewidth=1, label=f"beta = {beta:g}")
    ax1.set_xlabel("patches sorted by column variance", fontsize=8)
    ax1.set_ylabel("Var(U[:, p])", fontsize=8)
    ax1.set_title("(b) sorted column variances", fontsize=9)
    ax1.tick_params(labelsize=7)
    ax1.legend(fontsize=7)
    draw_dip(ax2, as_image(image), dropped, grid, f"(c) indiscriminative patches, beta = {beta:g}")
    return fig


def plot_dip_betas(
    U: torch.Tensor, image, grid: Grid, betas: Sequence[float] = (0.1, 0.2, 0.3, 0.5), index: int = 0
) -> Figure:
    """Fig. 6: the dropped patches ``D`` (dark) at several ``beta``."""
    u = pick(U, index, 2)
    grid.check(u.shape[-1], "U")
    if not betas:
        raise ValueError("give at least one beta")
    img = as_image(image)
    fig = new_figure(3.0 * (len(betas) + 1), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(betas) + 1))
    axes[0].imshow(img, interpolation="nearest")
    axes[0].set_title("image", fontsize=9)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax, beta in zip(axes[1:], betas):
        draw_dip(ax, img, indiscriminative_patches(u, float(beta)), grid, f"beta = {float(beta):g}")
    return fig
