"""Figures of ``patchfield stats``: per-head scatters, norm map beside ``D``, norm histogram, model comparison.

Every function returns a :class:`matplotlib.figure.Figure` on an Agg canvas (save with
:func:`patchfield.drawing.save_figure`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..drawing import as_image, new_figure, patch_boxes, show_patch_map, to_numpy
from ..stats.collect import HeadStats
from .maps import draw_dip

__all__ = ["draw_head_scatter", "plot_artefacts", "plot_comparison", "plot_head_statistic", "plot_norm_histogram"]


def draw_head_scatter(ax: Axes, values, ylabel: str, title: str | None = None, ceiling: float | None = None,
                      ceiling_label: str | None = None) -> None:
    """One dot per head against its layer (``values`` ``[L, k]``), the mean of heads as a line (ViT paper, Fig. 7).

    ``ceiling``: a reference level drawn dashed (e.g. ``ln N``, the entropy of uniform attention).
    """
    v = np.asarray(to_numpy(values), dtype=np.float64)
    layers, heads = v.shape
    x = np.repeat(np.arange(1, layers + 1), heads)
    ax.scatter(x, v.reshape(-1), s=14, alpha=0.75, color="#1565c0", edgecolors="none", label="one head")
    ax.plot(np.arange(1, layers + 1), v.mean(1), color="#e65100", linewidth=1.2, label="mean of heads")
    if ceiling is not None:
        ax.axhline(ceiling, color="#616161", linestyle="--", linewidth=0.9, label=ceiling_label)
    ax.set_xlabel("layer (network depth)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xticks(np.arange(1, layers + 1, max(1, layers // 12)))
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(alpha=0.25)
    if title:
        ax.set_title(title, fontsize=9)


def plot_head_statistic(values, ylabel: str, title: str, ceiling: float | None = None,
                        ceiling_label: str | None = None) -> Figure:
    """:func:`draw_head_scatter` as a figure of its own."""
    fig = new_figure(4.6, 3.4)
    ax = fig.add_subplot()
    draw_head_scatter(ax, values, ylabel, title, ceiling, ceiling_label)
    ax.legend(fontsize=7, loc="best")
    return fig


def plot_artefacts(image, stats: HeadStats, index: int = 0) -> Figure:
    """Patch-token norms at the artefact block with the artefact tokens outlined, beside ``D`` on the image."""
    img = as_image(image)
    g, fit = stats.grid, stats.artefacts[index]
    fig = new_figure(8.4, 4.3)
    left, right = fig.subplots(1, 2)
    show_patch_map(left, img, stats.norms[index, stats.artefact_block], g, cmap="viridis", alpha=0.7,
                   title=f"token norms, block {stats.artefact_block + 1}", label="L2 norm")
    x, y = (to_numpy(c) for c in g.coords())
    t = np.asarray(fit.tokens, dtype=int)
    patch_boxes(left, g, img.shape[:2], np.stack([x[t], x[t], y[t], y[t]], -1), color="#ff1744", linewidth=2.0)
    label = f"artefacts: {len(t)} tokens" if fit.found else "artefacts: none found"
    left.legend(handles=[Line2D([], [], color="#ff1744", linewidth=2, label=label)], loc="upper left",
                bbox_to_anchor=(0.0, -0.01), fontsize=7, frameon=False)
    draw_dip(right, img, stats.dropped[index], g, f"indiscriminative patches D (beta = {stats.beta:g})")
    return fig


def plot_norm_histogram(stats: HeadStats, index: int = 0) -> Figure:
    """Histogram of the log norms at the artefact block with the fitted components and their crossover."""
    fit = stats.artefacts[index]
    logn = np.log(np.asarray(to_numpy(stats.norms[index, stats.artefact_block]), dtype=np.float64).clip(1e-30))
    fig = new_figure(4.8, 3.4)
    ax = fig.add_subplot()
    ax.hist(logn, bins=max(10, min(60, int(math.sqrt(logn.size) * 2))), density=True, color="#90a4ae",
            label=f"{logn.size} patch tokens")
    if all(math.isfinite(v) for v in fit.means + fit.stds):
        grid = np.linspace(logn.min() - 0.5 * logn.std(), logn.max() + 0.5 * logn.std(), 400)
        for w, m, s, c, name in zip(fit.weights, fit.means, fit.stds, ("#1565c0", "#c62828"), ("low", "high")):
            dens = w * np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
            ax.plot(grid, dens, color=c, linewidth=1.2, label=f"{name} component (weight {w:.2f})")
    if fit.crossover is not None:
        ax.axvline(math.log(fit.crossover), color="black", linestyle="--", linewidth=1,
                   label=f"crossover: norm {fit.crossover:.3g}")
    ax.set_xlabel(f"ln(token norm), block {stats.artefact_block + 1}", fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.set_title("artefact tokens: " + (f"{len(fit.tokens)} found" if fit.found else fit.reason), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper right")
    return fig


def plot_comparison(models: Sequence[tuple[str, dict]]) -> Figure:
    """One row per model: mean distance and entropy per head against layer, mean patch-token norm per block.

    Each column shares its y axis across the models, so the rows compare directly.

    Args:
        models: ``(label, summary)`` pairs; ``summary`` holds ``mean_distance``, ``entropy`` (``[L][k]``)
            and ``mean_norm`` (``[blocks]``), as in ``stats.json``; with ``grid`` the entropy plot marks ``ln N``.
    """
    fig = new_figure(11.0, 2.9 * len(models) + 0.3)
    axes = np.asarray(fig.subplots(len(models), 3, squeeze=False, sharey="col"))  # one scale per statistic
    for row, (label, s) in zip(axes, models):
        draw_head_scatter(row[0], s["mean_distance"], "mean distance (px)", f"{label}: mean attention distance")
        ceiling = math.log(s["grid"][0] * s["grid"][1]) if "grid" in s else None
        draw_head_scatter(row[1], s["entropy"], "entropy (nats)", f"{label}: attention entropy", ceiling)
        norm = np.asarray(s["mean_norm"], dtype=np.float64)
        row[2].plot(np.arange(1, norm.size + 1), norm, marker="o", markersize=3, color="#2e7d32")
        row[2].set_xticks(np.arange(1, norm.size + 1, max(1, norm.size // 12)))
        row[2].set_xlabel("block", fontsize=8)
        row[2].set_ylabel("mean patch-token norm", fontsize=8)
        row[2].set_title(f"{label}: token norm per block", fontsize=9)
        row[2].tick_params(labelsize=7)
        row[2].grid(alpha=0.25)
    return fig
