"""The basic figures ``patchfield analyze`` writes beside each image's ``fields.json``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis import Analysis
from ..drawing import save_figure
from .maps import plot_dip, plot_field_size, plot_tendency_arrows, plot_uncertainty, plot_windows

__all__ = ["BASIC_FIGURES", "write_basic_figures"]

BASIC_FIGURES = ("uncertainty", "windows", "dip", "field_size", "tendency")


def write_basic_figures(result: Analysis, index: int, image: np.ndarray, folder: str | Path) -> dict[str, str]:
    """Write the basic PNGs of image ``index`` of an analysis into ``folder`` (atomically).

    Args:
        result: the batch's :class:`~patchfield.Analysis`.
        index: the image in the batch.
        image: the ``uint8`` RGB crop ``[H, W, 3]`` the model saw.
        folder: output folder (created if missing).

    Returns:
        ``{figure name: file name}`` for the files written, names as in :data:`BASIC_FIGURES`.
    """
    if not 0 <= index < result.batch_size:
        raise ValueError(f"image index {index} is out of range for a batch of {result.batch_size}")
    folder = Path(folder)
    makers = {
        "uncertainty": lambda: plot_uncertainty(result.U, index),
        "windows": lambda: plot_windows(image, result.windows, index=index),
        "dip": lambda: plot_dip(image, result.dropped, result.grid, index, beta=result.beta),
        "field_size": lambda: plot_field_size(image, result.field, index),
        "tendency": lambda: plot_tendency_arrows(image, result.field, index),
    }
    written = {}
    for name in BASIC_FIGURES:
        fig = makers[name]()
        file = f"{name}.png"
        save_figure(fig, folder / file)
        written[name] = file
    return written
