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
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..analysis import Analysis, analyze_map
from ..capture import capture_attention
from ..checks import check_rates
from ..images import SKIP_ERRORS, Photo, Skipped, read_photo, skip_reason, to_rgb
from ..preprocess import Preprocess
from ..uncertainty import interaction_uncertainty
from ..utils.io import write_json_atomic
from . import attention as A
from . import fields as FF
from . import windows as W
from ._draw import save_figure
from .maps import plot_field_size
from .winft import plot_winft_windows, winft_windows

__all__ = ["PAPER_FIGURES", "PaperFigures", "write_paper_figures"]

logger = logging.getLogger(__name__)

#: Figures drawn per image (Fig. 2 needs an object mask, Fig. 13 a WinfT model).
PAPER_FIGURES = (
    "fig2_pair_attention", "fig3_layer_attention", "fig3_head_uncertainty", "fig3_uncertainty_rows",
    "fig4_global_vs_window", "fig5_indiscriminative", "fig6_dip_betas", "fig7_responsive_field",
    "fig7_tendency_flow", "fig12_field_size", "fig13_winft_windows",
)

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
    if isinstance(mask, (str, Path)):
        try:
            with Image.open(mask) as im:
                im.load()
                mask = im.convert("L")
        except FileNotFoundError as e:
            raise FileNotFoundError(f"mask file {mask} does not exist") from e
        except OSError as e:
            raise ValueError(f"mask file {mask} is not a readable image ({e})") from e
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


def _figures_of(res: Analysis, maps, i: int, crop: np.ndarray, mask, windows_l, opts: dict) -> dict[str, Callable]:
    g, U, patches = maps.grid, res.U, opts["patches"]
    out: dict[str, Callable] = {
        "fig3_layer_attention": lambda: A.plot_layer_attention(maps, crop, patches, i),
        "fig3_head_uncertainty": lambda: A.plot_head_uncertainty(maps, crop, patches, i),
        "fig3_uncertainty_rows": lambda: A.plot_uncertainty_rows(U, crop, g, patches, i),
        "fig4_global_vs_window": lambda: W.plot_global_vs_window(crop, res.windows, patches[0] if patches else None, i),
        "fig5_indiscriminative": lambda: W.plot_indiscriminative(U, crop, g, res.beta, i),
        "fig6_dip_betas": lambda: W.plot_dip_betas(U, crop, g, opts["betas"], i),
        "fig7_responsive_field": lambda: FF.plot_responsive_field(crop, res.field, i),
        "fig7_tendency_flow": lambda: FF.plot_tendency_flow(crop, res.field, i),
        "fig12_field_size": lambda: plot_field_size(crop, res.field, i),
    }
    if mask is not None:
        out["fig2_pair_attention"] = lambda: A.plot_pair_attention(maps, mask, crop, i, seed=opts["seed"])
    if windows_l is not None:
        out["fig13_winft_windows"] = lambda: plot_winft_windows(res.field.mask()[i], windows_l[i], crop)
    return out


def _save(fig, folder: Path, name: str, svg: bool) -> str:
    save_figure(fig, folder / f"{name}.png")
    if svg:
        save_figure(fig, folder / f"{name}.svg")
    return f"{name}.png"


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
    images = list(images)
    if not images:
        raise ValueError("no images to draw")
    masks = [None] * len(images) if masks is None else list(masks)
    if len(masks) != len(images):
        raise ValueError(f"give one mask per image: {len(masks)} masks for {len(images)} images")
    missing = [m for m in masks if isinstance(m, (str, Path)) and not Path(m).is_file()]
    if missing:  # a mistake in the call, not an image to skip
        raise FileNotFoundError(f"mask file {missing[0]} does not exist")
    names = [f"image_{k:03d}" for k in range(len(images))] if names is None else [str(n) for n in names]
    if len(names) != len(images) or len(set(names)) != len(names):
        raise ValueError("give one distinct name per image")
    out = Path(out)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    preprocess = Preprocess.for_model(model) if preprocess is None else preprocess
    opts = {"patches": list(patches) if patches else None, "betas": list(betas), "seed": int(seed)}

    def wanted(name: str) -> bool:
        return not only or any(name.startswith(prefix) for prefix in only)

    result = PaperFigures()
    inner_all, outer_all, layers = [], [], None
    bar = tqdm(total=len(images), unit="img", desc="figures", file=sys.stderr, disable=not progress)
    for start in range(0, len(images), batch_size):
        xs, crops, mks, kept = [], [], [], []
        for k in range(start, min(start + batch_size, len(images))):
            try:  # one photo never ends the run: it is skipped with its reason (a tensor's misfit is a mistake)
                x, crop, m = _load(images[k], masks[k], preprocess)
            except SKIP_ERRORS as e:
                if isinstance(images[k], torch.Tensor):
                    raise
                label = str(images[k]) if isinstance(images[k], (str, Path)) else names[k]
                logger.warning("skipped %s: %s", label, skip_reason(e))
                result.failed.append(names[k])
                result.skipped.append(Skipped(label, skip_reason(e)))
                bar.update(1)
                continue
            xs.append(x)
            crops.append(crop)
            mks.append(m)
            kept.append(k)
        if not xs:
            continue
        batch = torch.stack(xs).to(device)
        maps = capture_attention(model, batch)
        bad = [p for p in opts["patches"] or [] if not 0 <= p < maps.grid.n]
        if bad:
            raise ValueError(f"patches {bad} are outside the {maps.grid.height}x{maps.grid.width} patch grid "
                             f"(0..{maps.grid.n - 1})")
        U = interaction_uncertainty(maps.patch_block())
        windows, dropped, fld = analyze_map(U, maps.grid, alpha, beta)
        res = Analysis(U=U, windows=windows, dropped=dropped, field=fld, grid=maps.grid, alpha=float(alpha),
                       beta=float(beta), num_prefix_tokens=maps.num_prefix_tokens, logits=maps.logits)
        windows_l = winft_windows(winft, batch) if winft is not None else None
        have = [j for j, m in enumerate(mks) if m is not None]
        if have and fig2_dataset is None:
            pm = A.patch_mask(torch.stack([mks[j] for j in have]), maps.grid)
            sub = type(maps)(maps.attn[have], maps.grid, maps.num_prefix_tokens, maps.layers)
            inner, outer = A.pair_attention(sub, pm)
            inner_all.append(inner)
            outer_all.append(outer)
            layers = maps.layers
        for i, k in enumerate(kept):
            folder = out / names[k]
            written = {}
            for fig_name, make in _figures_of(res, maps, i, crops[i], mks[i], windows_l, opts).items():
                if not wanted(fig_name):
                    continue
                try:
                    written[fig_name] = _save(make(), folder, fig_name, svg)
                except ValueError as e:  # e.g. an object too small for Fig. 2's pair
                    logger.warning("%s: %s skipped: %s", names[k], fig_name, e)
            image = images[k]
            record = {"image": str(image) if isinstance(image, (str, Path)) else names[k], **res.to_json(i)}
            result.fields[names[k]] = record
            if wanted("fields"):
                write_json_atomic(folder / "fields.json", record)
            result.index[names[k]] = written
            bar.update(1)
    bar.close()
    if fig2_dataset is not None:
        inner, outer, layers = A.pair_attention_dataset(model, fig2_dataset, batch_size=batch_size, device=device)
        inner_all, outer_all = [inner], [outer]
    if inner_all and wanted("fig2_pair_attention_dataset"):
        fig = A.plot_pair_attention_dataset(torch.cat(inner_all), torch.cat(outer_all), layers)
        result.index["dataset"] = {
            "fig2_pair_attention_dataset": _save(fig, out, "fig2_pair_attention_dataset", svg)}
    if result.skipped:
        result.index["skipped"] = [s.to_json() for s in result.skipped]
    write_json_atomic(out / "figures.json", result.index)
    return result
