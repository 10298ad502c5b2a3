"""Fig. 13: ground-truth windows (responsive fields) vs the sum over layers of WinfT's predicted masks."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..drawing import as_image, new_figure, show_image, to_numpy

__all__ = ["plot_winft_windows", "winft_windows"]


@torch.no_grad()
def winft_windows(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The windows a WinfT model applies to ``images``, boolean ``[B, L, N, N]`` (``Σ_l W_l`` is Fig. 13).

    The windows come from the model's own forward (``model(x, return_windows=True)``, i.e.
    :func:`patchfield.models.winft.window_mask` with its threshold over all ``T`` keys, prefix
    tokens included), never from a second implementation of the rule.

    Raises:
        ValueError: the model is not a WinfT (it cannot return its windows).
    """
    try:
        out = model(images, return_windows=True)
    except TypeError as e:
        raise ValueError(
            f"{type(model).__name__} cannot return its windows (model(x, return_windows=True)): "
            "Fig. 13 needs a WinfT model (patchfield.models.apply_winft)"
        ) from e
    windows = getattr(out, "windows", None)
    if windows is None and isinstance(out, tuple):
        windows = out[-1]
    if not isinstance(windows, torch.Tensor) or windows.dim() != 4:
        raise ValueError(f"{type(model).__name__}(x, return_windows=True) did not return [B, L, N, N] windows")
    return windows.bool()


def plot_winft_windows(ground_truth: torch.Tensor, predicted: torch.Tensor, image=None) -> Figure:
    """Fig. 13: the ``N × N`` ground-truth field mask beside ``Σ_l W_l`` of WinfT's predicted masks.

    Args:
        ground_truth: boolean ``[N, N]`` (row ``p``: the responsive field ``S_p``, e.g. ``field.mask()[i]``).
        predicted: boolean ``[L, N, N]``: WinfT's mask in every layer (one image of :func:`winft_windows`).
        image: optional RGB image shown first.
    """
    gt = to_numpy(ground_truth).astype(bool)
    pred = to_numpy(predicted).astype(bool)
    if gt.ndim != 2 or gt.shape[0] != gt.shape[1]:
        raise ValueError(f"ground_truth must be [N, N]; got {gt.shape}")
    if pred.ndim != 3 or pred.shape[1:] != gt.shape:
        raise ValueError(f"predicted must be [L, {gt.shape[0]}, {gt.shape[0]}]; got {pred.shape}")
    votes = pred.sum(0)
    agree = float((pred == gt[None]).mean())
    panels = 3 if image is not None else 2
    fig = new_figure(4.0 * panels, 3.8)
    axes = np.atleast_1d(fig.subplots(1, panels))
    if image is not None:
        show_image(axes[0], as_image(image), "(a) image")
    ax_gt, ax_pred = axes[-2], axes[-1]
    im = ax_gt.imshow(gt, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_gt.set_title(f"(b) ground-truth windows, {int(gt.sum())} ones", fontsize=9)
    cb = fig.colorbar(im, ax=ax_gt, fraction=0.046, pad=0.02, ticks=[0, 1])
    cb.set_label("w_gt[p, i]", fontsize=8)
    im = ax_pred.imshow(votes, cmap="gray", vmin=0, vmax=pred.shape[0], interpolation="nearest")
    ax_pred.set_title(f"(c) sum over {pred.shape[0]} layers of W_l (agreement {agree:.0%})", fontsize=9)
    cb = fig.colorbar(im, ax=ax_pred, fraction=0.046, pad=0.02)
    cb.set_label("layers voting 1", fontsize=8)
    for ax in (ax_gt, ax_pred):
        ax.set_xlabel("patch i", fontsize=8)
        ax.set_ylabel("patch p", fontsize=8)
        ax.tick_params(labelsize=7)
    return fig
