"""Every figure of the paper for a set of images, written into a folder: the pipeline behind
``patchfield figures`` and ``patchfield demo``.

Layout of ``out``: ``<name>/<figure>.png`` (and ``.svg``) plus ``<name>/fields.json`` per image,
``fig2_pair_attention_dataset.png`` and ``figures.json`` (the figures written, per image).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..analysis import Analysis, analyze_map
from ..capture import AttentionMaps, capture_attention
from ..checks import check_rates
from ..drawing import save_figure
from ..images import SKIP_ERRORS, Photo, Skipped, read_photo, skip_reason, to_rgb
from ..preprocess import Preprocess
from ..uncertainty import interaction_uncertainty
from ..utils.io import write_json_atomic
from . import attention as A
from . import fields as FF
from . import windows as W
from .maps import plot_field_size
from .winft import plot_winft_windows, winft_windows

__all__ = ["FIGURES", "PAPER_FIGURES", "PaperFigure", "PaperFigures", "write_paper_figures"]

logger = logging.getLogger(__name__)

ImageLike = str | Path | Image.Image | torch.Tensor
MaskLike = str | Path | Image.Image | np.ndarray | torch.Tensor | None


@dataclass
class PaperFigures:
    """What :func:`write_paper_figures` wrote: ``index`` (``figures.json``), each image's ``fields.json``
    record (``fields``) and the images it could not read (``failed``)."""

    index: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _read_mask(mask: MaskLike, preprocess: Preprocess, photo: Photo | None = None) -> torch.Tensor | None:
    """A mask (in the photo's stored pixel grid) through the photo's EXIF orientation and geometry."""
    if mask is None:
        return None
    if isinstance(mask, (str, Path)):  # the data sets' mask reader: palette masks by index, the rest by value
        from ..data.masks import read_mask_file

        try:
            mask = read_mask_file(mask)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"mask file {mask} does not exist") from e
    if not isinstance(mask, Image.Image):
        a = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if a.ndim != 2:
            raise ValueError(f"a mask must be [H, W]; got shape {a.shape}")
        mask = Image.fromarray((a != 0).astype(np.uint8) * 255)
    return preprocess.mask(photo.orient(mask.convert("L")) if photo is not None else mask.convert("L"))


def _load(image: ImageLike, mask: MaskLike, preprocess: Preprocess) -> tuple[torch.Tensor, np.ndarray, Any]:
    """``(x [3, H, W], crop uint8 [H, W, 3], mask bool [H, W] or None)`` of one image."""
    if isinstance(image, torch.Tensor):  # a model input already: drawn un-normalised, its mask at its size
        if image.dim() != 3 or tuple(image.shape[-2:]) != preprocess.size:
            raise ValueError(f"an image tensor must be a normalised [3, {preprocess.size[0]}, {preprocess.size[1]}] "
                             f"model input; got {tuple(image.shape)}")
        x = image.detach().float().cpu()
        rgb = (x * preprocess.std + preprocess.mean).clamp(0, 1).permute(1, 2, 0).numpy()
        crop = np.floor(rgb * 255 + 0.5).astype(np.uint8)
        m = None
        if mask is not None:
            m = torch.as_tensor(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)) != 0
            if tuple(m.shape) != preprocess.size:
                raise ValueError(f"the mask of an image tensor must be [{preprocess.size[0]}, {preprocess.size[1]}]; "
                                 f"got {tuple(m.shape)}")
        return x, crop, m
    photo = read_photo(image) if isinstance(image, (str, Path)) else Photo(to_rgb(image))
    x, crop = preprocess(photo.image)
    return x, crop, _read_mask(mask, preprocess, photo)


@dataclass(frozen=True)
class _Options:
    """The drawing options every image shares: Fig. 3/4's query patches, Fig. 6's rates, Fig. 2's seed."""

    patches: list[int] | None
    betas: list[float]
    seed: int


@dataclass(frozen=True)
class _Page:
    """What the figures of one image are drawn from: image ``index`` of a batch's analysis and attention."""

    result: Analysis
    maps: AttentionMaps
    index: int
    crop: np.ndarray
    mask: torch.Tensor | None
    winft_windows: torch.Tensor | None
    options: _Options


def _fig2_pair_attention(p: _Page) -> Figure | None:
    if p.mask is None:
        return None
    return A.plot_pair_attention(p.maps, p.mask, p.crop, p.index, seed=p.options.seed)


def _fig3_layer_attention(p: _Page) -> Figure:
    return A.plot_layer_attention(p.maps, p.crop, p.options.patches, p.index)


def _fig3_head_uncertainty(p: _Page) -> Figure:
    return A.plot_head_uncertainty(p.maps, p.crop, p.options.patches, p.index)


def _fig3_uncertainty_rows(p: _Page) -> Figure:
    return A.plot_uncertainty_rows(p.result.U, p.crop, p.maps.grid, p.options.patches, p.index)


def _fig4_global_vs_window(p: _Page) -> Figure:
    patch = p.options.patches[0] if p.options.patches else None
    return W.plot_global_vs_window(p.crop, p.result.windows, patch, p.index)


def _fig5_indiscriminative(p: _Page) -> Figure:
    return W.plot_indiscriminative(p.result.U, p.crop, p.maps.grid, p.result.beta, p.index)


def _fig6_dip_betas(p: _Page) -> Figure:
    return W.plot_dip_betas(p.result.U, p.crop, p.maps.grid, p.options.betas, p.index)


def _fig7_responsive_field(p: _Page) -> Figure:
    return FF.plot_responsive_field(p.crop, p.result.field, p.index)


def _fig7_tendency_flow(p: _Page) -> Figure:
    return FF.plot_tendency_flow(p.crop, p.result.field, p.index)


def _fig12_field_size(p: _Page) -> Figure:
    return plot_field_size(p.crop, p.result.field, p.index)


def _fig13_winft_windows(p: _Page) -> Figure | None:
    if p.winft_windows is None:
        return None
    return plot_winft_windows(p.result.field.mask()[p.index], p.winft_windows[p.index], p.crop)


@dataclass(frozen=True)
class PaperFigure:
    """One figure drawn per image: its file name and how it is drawn (``None``: the image lacks what it needs)."""

    name: str
    draw: Callable[[_Page], Figure | None]


#: The figures drawn per image, in this order (Fig. 2 needs an object mask, Fig. 13 a WinfT model).
FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure("fig2_pair_attention", _fig2_pair_attention),
    PaperFigure("fig3_layer_attention", _fig3_layer_attention),
    PaperFigure("fig3_head_uncertainty", _fig3_head_uncertainty),
    PaperFigure("fig3_uncertainty_rows", _fig3_uncertainty_rows),
    PaperFigure("fig4_global_vs_window", _fig4_global_vs_window),
    PaperFigure("fig5_indiscriminative", _fig5_indiscriminative),
    PaperFigure("fig6_dip_betas", _fig6_dip_betas),
    PaperFigure("fig7_responsive_field", _fig7_responsive_field),
    PaperFigure("fig7_tendency_flow", _fig7_tendency_flow),
    PaperFigure("fig12_field_size", _fig12_field_size),
    PaperFigure("fig13_winft_windows", _fig13_winft_windows),
)

#: Their names.
PAPER_FIGURES = tuple(f.name for f in FIGURES)


def _save(fig: Figure, folder: Path, name: str, svg: bool) -> str:
    save_figure(fig, folder / f"{name}.png")
    if svg:
        save_figure(fig, folder / f"{name}.svg")
    return f"{name}.png"


def _checked_inputs(images: Sequence[ImageLike], masks: Sequence[MaskLike] | None,
                    names: Sequence[str] | None) -> tuple[list[ImageLike], list[MaskLike], list[str]]:
    """The images, one mask (or ``None``) and one distinct name per image; ``ValueError`` where they do not fit."""
    images = list(images)
    if not images:
        raise ValueError("no images to draw")
    masks = [None] * len(images) if masks is None else list(masks)
    if len(masks) != len(images):
        raise ValueError(f"give one mask per image: {len(masks)} masks for {len(images)} images")
    names = [f"image_{k:03d}" for k in range(len(images))] if names is None else [str(n) for n in names]
    if len(names) != len(images) or len(set(names)) != len(names):
        raise ValueError("give one distinct name per image")
    missing = [m for m in masks if isinstance(m, (str, Path)) and not Path(m).is_file()]
    if missing:  # a mistake in the call, not an image to skip
        raise FileNotFoundError(f"mask file {missing[0]} does not exist")
    return images, masks, names


def _analyse(model: nn.Module, batch: torch.Tensor, alpha: float, beta: float,
             patches: list[int] | None) -> tuple[AttentionMaps, Analysis]:
    """The batch's attention and its analysis; ``ValueError`` for query patches outside the grid."""
    maps = capture_attention(model, batch)
    bad = [p for p in patches or [] if not 0 <= p < maps.grid.n]
    if bad:
        raise ValueError(f"patches {bad} are outside the {maps.grid.height}x{maps.grid.width} patch grid "
                         f"(0..{maps.grid.n - 1})")
    U = interaction_uncertainty(maps.patch_block())
    windows, dropped, fld = analyze_map(U, maps.grid, alpha, beta)
    result = Analysis(U=U, windows=windows, dropped=dropped, field=fld, grid=maps.grid, alpha=float(alpha),
                      beta=float(beta), num_prefix_tokens=maps.num_prefix_tokens, logits=maps.logits)
    return maps, result


def _draw_page(page: _Page, folder: Path, name: str, wanted: Callable[[str], bool], svg: bool) -> dict[str, str]:
    """Every wanted figure of one image that it can have, saved into ``folder``: ``{figure: file}``."""
    written = {}
    for figure in FIGURES:
        if not wanted(figure.name):
            continue
        try:
            fig = figure.draw(page)
            if fig is not None:
                written[figure.name] = _save(fig, folder, figure.name, svg)
        except ValueError as e:  # e.g. an object too small for Fig. 2's pair
            logger.warning("%s: %s skipped: %s", name, figure.name, e)
    return written


@dataclass
class _PairAttention:
    """Fig. 2's data-set statistic gathered over the batches: inner and outer pair attention per masked image."""

    inner: list[torch.Tensor] = field(default_factory=list)
    outer: list[torch.Tensor] = field(default_factory=list)
    layers: Sequence[int] | None = None

    def add(self, maps: AttentionMaps, masks: list[torch.Tensor | None]) -> None:
        have = [j for j, m in enumerate(masks) if m is not None]
        if not have:
            return
        pm = A.patch_mask(torch.stack([masks[j] for j in have]), maps.grid)
        sub = type(maps)(maps.attn[have], maps.grid, maps.num_prefix_tokens, maps.layers)
        inner, outer = A.pair_attention(sub, pm)
        self.inner.append(inner)
        self.outer.append(outer)
        self.layers = maps.layers

    def figure(self) -> Figure | None:
        if not self.inner:
            return None
        return A.plot_pair_attention_dataset(torch.cat(self.inner), torch.cat(self.outer), self.layers)


@torch.no_grad()
def write_paper_figures(
    model: nn.Module,
    images: Sequence[ImageLike],
    masks: Sequence[MaskLike] | None = None,
    winft: nn.Module | None = None,
    out: str | Path = "figures",
    *,
    names: Sequence[str] | None = None,
    alpha: float = 0.1,
    beta: float = 0.2,
    betas: Sequence[float] = (0.1, 0.2, 0.3, 0.5),
    patches: Sequence[int] | None = None,
    seed: int = 0,
    fig2_dataset: Any = None,
    batch_size: int = 4,
    only: Sequence[str] | None = None,
    svg: bool = False,
    progress: bool = True,
    preprocess: Preprocess | None = None,
) -> PaperFigures:
    """Write every figure of the paper (Fig. 2-7, 12, 13) and ``fields.json`` for each image into ``out``.

    Args:
        model: the analysed ViT (timm or Hugging Face), in eval mode, on the device to use.
        images: image files, PIL images (both go through ``Preprocess.for_model(model)``, the
            preprocessing rule), or normalised model inputs ``[3, H, W]`` (used as they are).
        masks: per image, an object mask for Fig. 2 (nonzero = object) or ``None``: a file or image
            (through the photo's geometry, :meth:`Preprocess.mask`), or for a tensor image an
            ``[H, W]`` array at its size.
        winft: a WinfT model for Fig. 13 (the windows it applies, :func:`winft_windows`).
        out: output folder.
        names: per image, its subfolder (default ``image_000``, ...).
        alpha, beta: rates of the windows and of ``D``; ``betas``: the values of Fig. 6.
        patches: query patches of Fig. 3 and 4 (default: spread over the grid).
        seed: seed of Fig. 2's sampled patch pair.
        fig2_dataset: a data set with object masks (``object_mask(i)``) for Fig. 2's data-set
            statistic; by default the masked images given.
        batch_size: images per forward pass.
        only: write only the figures (and ``fields`` for ``fields.json``) whose names start with one of
            these prefixes.
        svg: also write SVG beside every PNG.
        progress: a progress bar on stderr.
        preprocess: the photos' preprocessing (default ``Preprocess.for_model(model)``).

    Returns:
        :class:`PaperFigures`: the index written to ``figures.json`` and the images that could not be read
        (skipped with a logged warning).

    Raises:
        ValueError: rates, patches, masks or names that do not fit.
    """
    check_rates(alpha, beta, *betas)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    images, masks, names = _checked_inputs(images, masks, names)
    out = Path(out)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    preprocess = Preprocess.for_model(model) if preprocess is None else preprocess
    options = _Options(list(patches) if patches else None, list(betas), int(seed))

    def wanted(name: str) -> bool:
        return not only or any(name.startswith(prefix) for prefix in only)

    result = PaperFigures()
    pairs = _PairAttention()
    bar = tqdm(total=len(images), unit="img", desc="figures", file=sys.stderr, disable=not progress)
    for start in range(0, len(images), batch_size):
        loaded = []
        for k in range(start, min(start + batch_size, len(images))):
            try:  # one photo never ends the run: it is skipped with its reason (a tensor's misfit is a mistake)
                loaded.append((k, *_load(images[k], masks[k], preprocess)))
            except SKIP_ERRORS as e:
                if isinstance(images[k], torch.Tensor):
                    raise
                label = str(images[k]) if isinstance(images[k], (str, Path)) else names[k]
                logger.warning("skipped %s: %s", label, skip_reason(e))
                result.failed.append(names[k])
                result.skipped.append(Skipped(label, skip_reason(e)))
                bar.update(1)
        if not loaded:
            continue
        batch = torch.stack([x for _, x, _, _ in loaded]).to(device)
        maps, analysis = _analyse(model, batch, alpha, beta, options.patches)
        windows = winft_windows(winft, batch) if winft is not None else None
        if fig2_dataset is None:
            pairs.add(maps, [m for _, _, _, m in loaded])
        for i, (k, _, crop, mask) in enumerate(loaded):
            folder = out / names[k]
            page = _Page(analysis, maps, i, crop, mask, windows, options)
            result.index[names[k]] = _draw_page(page, folder, names[k], wanted, svg)
            image = images[k]
            record = {"image": str(image) if isinstance(image, (str, Path)) else names[k], **analysis.to_json(i)}
            result.fields[names[k]] = record
            if wanted("fields"):
                write_json_atomic(folder / "fields.json", record)
            bar.update(1)
    bar.close()
    if fig2_dataset is not None:
        inner, outer, layers = A.pair_attention_dataset(model, fig2_dataset, batch_size=batch_size, device=device)
        pairs = _PairAttention([inner], [outer], layers)
    fig = pairs.figure() if wanted("fig2_pair_attention_dataset") else None
    if fig is not None:
        result.index["dataset"] = {"fig2_pair_attention_dataset": _save(fig, out, "fig2_pair_attention_dataset", svg)}
    if result.skipped:
        result.index["skipped"] = [s.to_json() for s in result.skipped]
    write_json_atomic(out / "figures.json", result.index)
    return result
