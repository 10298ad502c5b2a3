"""Attention across layers: inner-object vs inner-outer pairs (Fig. 2), per-layer maps and per-head ``𝒰`` (Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import nn
from tqdm import tqdm

from ..capture import AttentionMaps, attention_hooks
from ..drawing import as_image, new_figure, patch_boxes, pick, show_image, show_patch_map, to_numpy, upsample
from ..grid import Grid, object_patches
from .maps import _check_patches, default_patches

__all__ = [
    "pair_attention",
    "pair_attention_dataset",
    "patch_mask",
    "plot_head_uncertainty",
    "plot_layer_attention",
    "plot_pair_attention",
    "plot_pair_attention_dataset",
    "plot_uncertainty_rows",
    "sample_pair",
]


def patch_mask(mask, grid: Grid, threshold: float = 0.5) -> torch.Tensor:
    """Object mask per patch, boolean ``[..., N]``.

    Args:
        mask: boolean object mask at pixel resolution ``[..., H, W]``, on the grid ``[..., gh, gw]``,
            or per patch ``[N]`` (one dimension; reshape a batch of per-patch masks to ``[B, gh, gw]``).
        grid: the patch grid.
        threshold: a patch is inside the object when at least this share of its pixels is
            (pixels mapped to patches by :func:`patchfield.grid.pixel_cells`).

    >>> m = torch.zeros(4, 4, dtype=torch.bool); m[:2, :3] = True  # 4x4 pixels, 2x2 patches
    >>> patch_mask(m, Grid(2, 2)).tolist()
    [True, True, False, False]
    """
    m = torch.as_tensor(to_numpy(mask)).bool()
    if m.dim() == 1 and m.shape[0] == grid.n:
        return m
    if m.dim() < 2:
        raise ValueError(f"mask must be [..., H, W], [..., gh, gw] or [N={grid.n}]; got {tuple(m.shape)}")
    return object_patches(m, grid, threshold)


def pair_attention(maps: AttentionMaps, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean attention of inner-object pairs and of inner-outer pairs, per image and layer (Fig. 2 statistic).

    Attention is the patch block averaged over heads. Inner pairs are ``(p, q)`` with both patches in the
    object and ``p ≠ q``; inner-outer pairs have ``p`` in the object and ``q`` outside.

    Args:
        maps: captured attention ``[B, L, k, T, T]``.
        masks: boolean ``[B, N]`` (see :func:`patch_mask`).

    Returns:
        ``(inner, outer)``, float ``[B, L]`` each; NaN where an image has no such pair.
    """
    m = masks.to(torch.bool)
    if m.dim() == 1:
        m = m[None]
    b, n = maps.attn.shape[0], maps.grid.n
    if m.shape != (b, n):
        raise ValueError(f"masks must be [B={b}, N={n}]; got {tuple(m.shape)}")
    inner, outer = _pair_means(maps.patch_block().float().mean(2).transpose(0, 1), m)  # [L, B, N, N] in
    return inner.T, outer.T


def _pair_means(a: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inner-object and inner-outer means of ``a`` ``[..., B, N, N]`` under masks ``m`` ``[B, N]`` → ``[..., B]``."""
    n = m.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=a.device)
    m = m.to(a.device)
    inner = m[:, :, None] & m[:, None, :] & ~eye
    outer = m[:, :, None] & ~m[:, None, :]

    def mean(sel: torch.Tensor) -> torch.Tensor:
        count = sel.sum((-1, -2)).float()
        total = (a * sel).sum((-1, -2))
        return torch.where(count > 0, total / count.clamp_min(1), torch.nan)

    return mean(inner), mean(outer)


@torch.no_grad()
def pair_attention_dataset(
    model: nn.Module,
    dataset,
    indices: Sequence[int] | None = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Fig. 2's statistic over a data set with object masks, streaming (never holds ``[B, L, k, T, T]``).

    Args:
        model: a timm or Hugging Face ViT.
        dataset: returns ``(image, label)`` and has ``object_mask(i)`` (e.g. ``patchfield.data.SyntheticShapes``).
        indices: the images to use (all by default).
        batch_size: images per forward pass.
        device: where to run (the model's device by default).

    Returns:
        ``(inner, outer, layers)``: ``[M, L]`` as :func:`pair_attention`, and the layer indices.
    """
    if not hasattr(dataset, "object_mask"):
        raise ValueError(f"{type(dataset).__name__} has no object masks (object_mask(i)); Fig. 2 needs them")
    idx = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    if not idx:
        raise ValueError("no images to measure")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inner_all, outer_all, layers = [], [], ()
    for start in tqdm(range(0, len(idx), batch_size), unit="batch", desc="Fig. 2 statistic"):
        chunk = idx[start:start + batch_size]
        x = torch.stack([dataset[i][0] for i in chunk]).to(device)
        found: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        state: dict = {}

        def on_layer(layer: int, attn: torch.Tensor, found=found, state=state) -> None:
            p = attn.shape[-1] - state["n"]
            found[layer] = _pair_means(attn[..., p:, p:].float().mean(1), state["mask"])

        with attention_hooks(model, on_layer) as adapter:
            grid = adapter.grid(x)
            masks = torch.stack([torch.as_tensor(to_numpy(dataset.object_mask(i))) for i in chunk])
            state.update(n=grid.n, mask=patch_mask(masks, grid).to(device))
            adapter.forward(x)
        layers = tuple(sorted(found))
        inner_all.append(torch.stack([found[k][0] for k in layers], -1).cpu())
        outer_all.append(torch.stack([found[k][1] for k in layers], -1).cpu())
    return torch.cat(inner_all), torch.cat(outer_all), layers


def sample_pair(mask: torch.Tensor, seed: int = 0) -> tuple[int, int, int]:
    """Random target ``A`` and partner ``B`` inside the object and ``C`` outside it (``mask``: bool ``[N]``)."""
    m = torch.as_tensor(mask).bool().reshape(-1)
    inside, outside = torch.nonzero(m).flatten(), torch.nonzero(~m).flatten()
    if len(inside) < 2 or len(outside) < 1:
        raise ValueError(
            f"the object covers {len(inside)} of {m.numel()} patches; Fig. 2 needs at least two patches inside "
            "and one outside (use a finer grid or another mask)"
        )
    g = torch.Generator().manual_seed(int(seed))
    ab = inside[torch.randperm(len(inside), generator=g)[:2]]
    c = outside[torch.randint(len(outside), (1,), generator=g)]
    return int(ab[0]), int(ab[1]), int(c[0])


def _mark(ax, grid: Grid, size, p: int, colour: str, label: str | None, fill: bool = True) -> None:
    x, y = p % grid.width, p // grid.width
    patch_boxes(ax, grid, size, [x, x, y, y], color=colour, fill=fill, alpha=0.75 if fill else 1.0,
                linewidth=1.0 if fill else 1.5, label=label)


def plot_pair_attention(
    maps: AttentionMaps, mask, image, index: int = 0, pair: Sequence[int] | None = None, seed: int = 0
) -> Figure:
    """Fig. 2: attention of an inner-object pair (A→B) and an inner-outer pair (A→C) across layers.

    Args:
        maps: captured attention of a batch.
        mask: the object mask of image ``index`` (pixels, grid or per patch; see :func:`patch_mask`).
        image: the RGB image the model saw.
        index: the image in the batch.
        pair: patches ``(A, B, C)``; sampled with ``seed`` inside/outside the object when ``None``.
    """
    g = maps.grid
    m = patch_mask(mask, g)
    if m.dim() != 1:
        raise ValueError(f"give the mask of one image; got shape {tuple(m.shape)}")
    a_, b_, c_ = _check_patches(pair, g) if pair is not None else sample_pair(m, seed)
    att = pick(maps.patch_block(), index, 4).float()  # [L, k, N, N]
    ab, ac = to_numpy(att[:, :, a_, b_]), to_numpy(att[:, :, a_, c_])  # [L, k]
    img = as_image(image)
    layers = np.asarray(maps.layers) + 1
    fig = new_figure(9.0, 3.6)
    ax0, ax1 = fig.subplots(1, 2, width_ratios=[1, 1.6])
    show_image(ax0, img, "sampled patches")
    shade = np.zeros((*img.shape[:2], 4))
    shade[..., 3] = 0.45 * upsample(~to_numpy(m), g, img.shape[:2])
    ax0.imshow(shade, interpolation="nearest")
    _mark(ax0, g, img.shape[:2], a_, "red", f"A (target) = {a_}")
    _mark(ax0, g, img.shape[:2], b_, "#2979ff", f"B (inner) = {b_}")
    _mark(ax0, g, img.shape[:2], c_, "orange", f"C (outer) = {c_}")
    ax0.legend(loc="upper left", bbox_to_anchor=(0.0, -0.01), fontsize=7, frameon=False, ncol=3)
    for values, colour, name in ((ab, "#2979ff", "A→B inner-object"), (ac, "orange", "A→C inner-outer")):
        ax1.plot(layers, values.mean(1), "-o", color=colour, markersize=3, label=f"{name} (mean of heads)")
        ax1.fill_between(layers, values.min(1), values.max(1), color=colour, alpha=0.2, label=f"{name} (head range)")
    ax1.set_xlabel("layer", fontsize=8)
    ax1.set_ylabel("attention score", fontsize=8)
    ax1.set_title("attention across layers (outside the object darkened)", fontsize=9)
    ax1.tick_params(labelsize=7)
    ax1.legend(fontsize=7)
    return fig


def plot_pair_attention_dataset(
    inner: torch.Tensor, outer: torch.Tensor, layers: Sequence[int] | None = None
) -> Figure:
    """Fig. 2 over a data set: mean ± std over images of :func:`pair_attention`, and its spread across layers.

    Args:
        inner, outer: ``[M, L]`` from :func:`pair_attention` over ``M`` images (NaN rows are skipped).
        layers: layer numbers for the x axis (0-based; shown 1-based).
    """
    i, o = to_numpy(inner).astype(np.float64), to_numpy(outer).astype(np.float64)
    if i.ndim != 2 or i.shape != o.shape:
        raise ValueError(f"inner and outer must both be [M, L]; got {i.shape} and {o.shape}")
    keep = ~(np.isnan(i).any(1) | np.isnan(o).any(1))
    if not keep.any():
        raise ValueError("no image has both an inner-object and an inner-outer pair")
    i, o = i[keep], o[keep]
    x = (np.asarray(layers) if layers is not None else np.arange(i.shape[1])) + 1
    fig = new_figure(9.0, 3.4)
    ax0, ax1 = fig.subplots(1, 2, width_ratios=[1.6, 1])
    for values, colour, name in ((i, "#2979ff", "inner-object pairs"), (o, "orange", "inner-outer pairs")):
        mu, sd = values.mean(0), values.std(0)
        ax0.plot(x, mu, "-o", color=colour, markersize=3, label=name)
        ax0.fill_between(x, mu - sd, mu + sd, color=colour, alpha=0.2)
    ax0.set_xlabel("layer", fontsize=8)
    ax0.set_ylabel("mean attention (± std over images)", fontsize=8)
    ax0.set_title(f"attention across layers, {len(i)} images", fontsize=9)
    ax0.legend(fontsize=7)
    ax0.tick_params(labelsize=7)
    bp = ax1.boxplot([i.std(1), o.std(1)], patch_artist=True)
    ax1.set_xticks([1, 2], ["inner-object", "inner-outer"], fontsize=8)
    for box, colour in zip(bp["boxes"], ("#2979ff", "orange")):
        box.set_facecolor(colour)
        box.set_alpha(0.5)
    ax1.set_ylabel("std of attention across layers", fontsize=8)
    ax1.set_title("variation across layers, per image", fontsize=9)
    ax1.tick_params(labelsize=7)
    return fig


def _patch_rows(
    maps_grid: Grid, rows: np.ndarray, image: np.ndarray, patches: list[int], titles: list[str], row_label: str,
    label: str,
) -> Figure:
    """A grid of heat maps: ``rows[r, c]`` is patch ``patches[r]``'s map in column ``c`` (``[R, C, N]``)."""
    r_count, c_count = rows.shape[:2]
    fig = new_figure(1.7 * (c_count + 1) + 0.6, 1.75 * r_count + 0.4)
    axes = np.asarray(fig.subplots(r_count, c_count + 1, squeeze=False))
    for r, p in enumerate(patches):
        show_image(axes[r, 0], image, f"{row_label} {p}" if r == 0 else None)
        _mark(axes[r, 0], maps_grid, image.shape[:2], p, "red", None)
        axes[r, 0].set_ylabel(f"patch {p}", fontsize=8)
        vmin, vmax = float(rows[r].min()), float(rows[r].max())
        im = None
        for c in range(c_count):
            im = show_patch_map(axes[r, c + 1], image, rows[r, c], maps_grid, title=titles[c] if r == 0 else None,
                                cmap="jet", alpha=0.6, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-12,
                                colorbar=False)
            _mark(axes[r, c + 1], maps_grid, image.shape[:2], p, "white", None, fill=False)
        cb = fig.colorbar(im, ax=axes[r, :].tolist(), fraction=0.02, pad=0.01)
        cb.set_label(label, fontsize=7)
        cb.ax.tick_params(labelsize=6)
    return fig


def plot_layer_attention(
    maps: AttentionMaps, image, patches: Sequence[int] | None = None, index: int = 0, head: int | None = None
) -> Figure:
    """Fig. 3(a): the attention row ``A_i[p, :]`` of each chosen patch in every layer, on the image.

    Args:
        maps: captured attention.
        image: the RGB image the model saw.
        patches: patch indices (four spread over the grid by default).
        index: the image in the batch.
        head: one head, or ``None`` for the mean over heads.
    """
    g = maps.grid
    chosen = _check_patches(patches if patches is not None else default_patches(g), g)
    att = pick(maps.patch_block(), index, 4).float()  # [L, k, N, N]
    if head is not None and not -att.shape[1] <= head < att.shape[1]:
        raise ValueError(f"head {head} is out of range for {att.shape[1]} heads")
    a = att.mean(1) if head is None else att[:, head]  # [L, N, N]
    rows = to_numpy(a[:, chosen, :].permute(1, 0, 2))  # [R, L, N]
    titles = [f"A_{layer + 1}" for layer in maps.layers]
    which = "mean of heads" if head is None else f"head {head}"
    return _patch_rows(g, rows, as_image(image), chosen, titles, "patch", f"attention ({which})")


def plot_head_uncertainty(maps: AttentionMaps, image, patches: Sequence[int] | None = None, index: int = 0) -> Figure:
    """Fig. 3(a), lower rows: per-head ``𝒰_h[p, :]`` (variance of attention across layers) for chosen patches."""
    g = maps.grid
    chosen = _check_patches(patches if patches is not None else default_patches(g), g)
    att = pick(maps.patch_block(), index, 4).double()  # [L, k, N, N]
    var = att.var(0, correction=0)  # [k, N, N]
    rows = to_numpy(var[:, chosen, :].permute(1, 0, 2))  # [R, k, N]
    titles = [rf"$\mathcal{{U}}$ head {h}" for h in range(var.shape[0])]
    return _patch_rows(g, rows, as_image(image), chosen, titles, "patch", "variance across layers")


def plot_uncertainty_rows(U: torch.Tensor, image, grid: Grid, patches: Sequence[int] | None = None,
                          index: int = 0) -> Figure:
    """Fig. 3(b): the row ``u_p = U[p, :]`` of chosen patches as heat maps on the image."""
    u = pick(U, index, 2)
    grid.check(u.shape[-1], "U")
    chosen = _check_patches(patches if patches is not None else default_patches(grid), grid)
    img = as_image(image)
    fig = new_figure(2.6 * len(chosen) + 0.4, 2.9)
    axes = np.atleast_1d(fig.subplots(1, len(chosen)))
    for ax, p in zip(axes, chosen):
        show_patch_map(ax, img, u[p], grid, title=f"u_p, patch {p}", cmap="jet", alpha=0.6, label="U[p, i]")
        _mark(ax, grid, img.shape[:2], p, "white", None, fill=False)
    fig.legend(handles=[Line2D([], [], color="white", markeredgecolor="black", marker="s", linestyle="",
                                       label="patch p (outlined)")],
               loc="outside lower center", fontsize=7, frameon=False)
    return fig
