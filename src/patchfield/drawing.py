"""Drawing primitives shared by the figures, the explorer and the reports: images, per-patch heat maps, boxes, saving.

Figures are built with :class:`matplotlib.figure.Figure` directly (Agg canvas), never through
``pyplot``, so no global backend state is touched and nothing opens a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .grid import Grid, pixel_cells
from .utils.io import atomic_write

__all__ = [
    "as_image",
    "new_figure",
    "patch_boxes",
    "patch_centres",
    "pick",
    "save_figure",
    "show_image",
    "show_patch_map",
    "to_numpy",
    "upsample",
]


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas (no pyplot, no window)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_numpy(x) -> np.ndarray:
    """A tensor or array as a NumPy array on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def pick(x: torch.Tensor, index: int, single_dims: int) -> torch.Tensor:
    """Image ``index`` of a batched tensor, or the tensor itself when it has no batch dimension.

    Args:
        x: a tensor whose trailing ``single_dims`` dimensions describe one image.
        index: the image in the batch.
        single_dims: number of dimensions of one image's tensor.
    """
    if x.dim() == single_dims:
        return x
    if x.dim() != single_dims + 1:
        raise ValueError(f"expected a tensor with {single_dims} or {single_dims + 1} dimensions, got {tuple(x.shape)}")
    if not -x.shape[0] <= index < x.shape[0]:
        raise ValueError(f"image index {index} is out of range for a batch of {x.shape[0]}")
    return x[index]


def as_image(image) -> np.ndarray:
    """An RGB image as ``uint8`` ``[H, W, 3]`` (accepts uint8 arrays, float arrays in [0, 1], tensors ``[3, H, W]``)."""
    a = to_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"image must be [H, W, 3] (or [3, H, W]); got shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype != np.uint8:
        a = np.clip(np.asarray(a, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return a


def upsample(values: np.ndarray, grid: Grid, size: tuple[int, int]) -> np.ndarray:
    """A per-patch map ``[N]`` (or ``[gh, gw]``) as a full-resolution ``[H, W]`` map: each pixel takes the value
    of its patch (:func:`patchfield.grid.pixel_cells`)."""
    v = np.asarray(values).reshape(grid.height, grid.width)
    rows, cols = (c.numpy() for c in pixel_cells(size[0], size[1], grid))
    return v[rows[:, None], cols[None, :]]


def show_image(ax: Axes, image: np.ndarray, title: str | None = None) -> None:
    """Draw an RGB image without ticks."""
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def show_patch_map(
    ax: Axes,
    image: np.ndarray,
    values,
    grid: Grid,
    *,
    title: str | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
    label: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
):
    """Overlay a per-patch map on the image at full resolution, with a colour bar.

    Returns:
        The ``AxesImage`` of the overlay.
    """
    show_image(ax, image, title)
    full = upsample(to_numpy(values).astype(np.float64), grid, image.shape[:2])
    im = ax.imshow(full, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, interpolation="nearest")
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        if label:
            cb.set_label(label, fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return im


def _cell(grid: Grid, size: tuple[int, int]) -> tuple[float, float]:
    return size[1] / grid.width, size[0] / grid.height


def patch_centres(grid: Grid, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(x, y)`` of every patch centre, ``[N]`` each."""
    cw, ch = _cell(grid, size)
    x, y = (to_numpy(c) for c in grid.coords())
    return (x + 0.5) * cw - 0.5, (y + 0.5) * ch - 0.5


def patch_boxes(
    ax: Axes,
    grid: Grid,
    size: tuple[int, int],
    bounds: Sequence[Sequence[int]] | np.ndarray,
    *,
    color="cyan",
    linewidth: float = 2.0,
    fill: bool = False,
    alpha: float = 1.0,
    label: str | None = None,
) -> None:
    """Draw inclusive patch-unit boxes ``(left, right, top, bottom)`` on an image of ``size`` pixels."""
    cw, ch = _cell(grid, size)
    b = np.asarray(bounds, dtype=np.float64).reshape(-1, 4)
    rects = [
        Rectangle((x0, y0), w, h)
        for x0, y0, w, h in zip(b[:, 0] * cw - 0.5, b[:, 2] * ch - 0.5, (b[:, 1] - b[:, 0] + 1) * cw,
                                (b[:, 3] - b[:, 2] + 1) * ch)
    ]
    if not rects:
        return
    ax.add_collection(PatchCollection(
        rects, facecolor=color if fill else "none", edgecolor=color, linewidth=linewidth, alpha=alpha,
        label=label, match_original=False,
    ))


def save_figure(fig: Figure, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically (format from ``fmt`` or the suffix)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".") or "png"
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi)
    return path
