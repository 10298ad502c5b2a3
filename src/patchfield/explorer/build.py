"""Build the explorer page: data payload from patchfield's objects, inlined into the template."""

from __future__ import annotations

import base64
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..capture import AttentionMaps
from ..checks import check_rates
from ..dip import column_variance
from ..uncertainty import interaction_uncertainty
from ..utils.io import atomic_write

__all__ = ["explorer_html", "explorer_payload", "write_explorer"]

FULL_ATTENTION_BUDGET = 8_000_000
"""Largest ``L·k·N²`` for which ``full_attention="auto"`` embeds every layer's and head's attention (bytes)."""


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _quantised_rows(rows: torch.Tensor) -> dict[str, str]:
    """``[..., N, N]`` non-negative rows as ``uint8`` relative to each row's maximum (its float32 ``scale``)."""
    r = rows.detach().float().cpu().clamp_min(0)
    scale = r.amax(-1)
    q = torch.where(scale[..., None] > 0, torch.round(r / scale.clamp_min(1e-38)[..., None] * 255), 0.0)
    return {"q": _b64(q.to(torch.uint8).numpy()), "scale": _b64(scale.numpy().astype("<f4"))}


def _png_data_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _colormap(name: str = "inferno") -> str:
    import matplotlib

    lut = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
    return _b64(np.clip(np.round(lut * 255), 0, 255).astype(np.uint8))


def explorer_payload(
    maps: AttentionMaps,
    image,
    index: int = 0,
    alpha: float = 0.1,
    beta: float = 0.2,
    *,
    U: torch.Tensor | None = None,
    full_attention: str | bool = "auto",
    patch: int | None = None,
    model_name: str | None = None,
    patch_size: tuple[float, float] | None = None,
    norms: torch.Tensor | None = None,
    norm_block: int | None = None,
) -> dict[str, Any]:
    """The data the page embeds, as a JSON-ready dict.

    Args:
        maps: captured attention of a batch (``[B, L, k, T, T]``).
        image: the RGB image the model saw, ``uint8`` ``[H, W, 3]``.
        index: the image in the batch.
        alpha, beta: the initial slider values.
        U: the uncertainty map ``[N, N]`` (or ``[B, N, N]``) to embed; computed from ``maps`` when ``None``.
        full_attention: embed every layer's and head's attention: ``True``, ``False``, or ``"auto"``
            (when ``L·k·N² ≤`` :data:`FULL_ATTENTION_BUDGET`).
        patch: the patch selected on load (the centre by default).
        model_name: shown in the page's subtitle.
        patch_size: ``(ph, pw)`` in pixels for the heads' mean attention distance; by default the
            image size over the grid (right when ``image`` is the model input).
        norms: patch-token norms ``[N]`` (or ``[B, N]``) at one block: their artefact tokens
            (:func:`patchfield.stats.artefact_tokens`) become the page's artefact toggle.
        norm_block: the block ``norms`` come from (shown in the page).
    """
    from ..drawing import as_image, pick

    check_rates(alpha, beta)
    if full_attention not in ("auto", True, False):
        raise ValueError(f"full_attention must be 'auto', True or False, got {full_attention!r}")
    g = maps.grid
    block = pick(maps.patch_block(), index, 4)  # [L, k, N, N]
    if U is None:
        U = interaction_uncertainty(block)
    u = pick(U, index, 2).detach().float().cpu()
    g.check(u.shape[-1], "U")
    img = as_image(image)
    layers, heads = block.shape[0], block.shape[1]
    if full_attention == "auto":
        full_attention = layers * heads * g.n * g.n <= FULL_ATTENTION_BUDGET
    centre = (g.height // 2) * g.width + g.width // 2
    if patch is not None and not 0 <= int(patch) < g.n:
        raise ValueError(f"patch {patch} is outside the {g.height}x{g.width} grid")
    attention: dict[str, Any] = {
        "num_layers": layers,
        "num_heads": heads,
        "layer_mean": _quantised_rows(block.float().mean(1)),
        "head_variance": _quantised_rows(block.float().var(0, correction=0)),
    }
    if full_attention:
        attention["full"] = _quantised_rows(block)
    extra = {"head_stats": _head_stats(block, g, patch_size or (img.shape[0] / g.height, img.shape[1] / g.width))}
    if norms is not None:
        extra["artefacts"] = _artefacts(pick(norms, index, 1), g, norm_block)
    return {
        "version": 1,
        "grid": [g.height, g.width],
        "num_prefix_tokens": maps.num_prefix_tokens,
        "layers": list(maps.layers),
        "alpha": float(alpha),
        "beta": float(beta),
        "initial_patch": int(patch) if patch is not None else centre,
        "image": _png_data_uri(img),
        "image_size": [int(img.shape[0]), int(img.shape[1])],
        "U": _b64(u.numpy().astype("<f4")),
        "column_variance": _b64(column_variance(u).numpy().astype("<f4")),
        "attention": attention,
        "colormap": _colormap(),
        "model": model_name,
        **extra,
    }


def _head_stats(block: torch.Tensor, grid, patch_size) -> dict[str, Any]:
    """Each layer's and head's mean attention distance (pixels) and entropy (nats), ``[L][k]`` each."""
    from ..stats import head_reductions

    distance, entropy = head_reductions(block, grid, patch_size)
    return {
        "patch_size": [float(patch_size[0]), float(patch_size[1])],
        "mean_distance": [[round(float(v), 4) for v in row] for row in distance.tolist()],
        "entropy": [[round(float(v), 5) for v in row] for row in entropy.tolist()],
    }


def _artefacts(norms: torch.Tensor, grid, block: int | None) -> dict[str, Any]:
    """The artefact tokens of one image's patch-token norms ``[N]`` for the page's toggle."""
    from ..stats import artefact_tokens

    grid.check(norms.shape[-1], "norms")
    fit = artefact_tokens(norms.detach().float().cpu())
    return {"tokens": fit.tokens, "found": fit.found, "reason": fit.reason, "crossover": fit.crossover,
            "block": block}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def explorer_html(maps: AttentionMaps, image, index: int = 0, alpha: float = 0.1, beta: float = 0.2, *,
                  title: str | None = None, **kwargs: Any) -> str:
    """The self-contained explorer page as a string (arguments as :func:`explorer_payload`)."""
    import html

    payload = explorer_payload(maps, image, index, alpha, beta, **kwargs)
    # "<" only occurs inside JSON strings; as \u003c no "</script", "<script" or "<!--" can end the block early
    data = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")
    page = _asset("template.html")
    for key, value in (("__PF_CSS__", _asset("explorer.css")), ("__PF_JS__", _asset("explorer.js")),
                       ("__PF_TITLE__", html.escape(title or "patchfield explorer")), ("__PF_DATA__", data)):
        page = page.replace(key, value)
    return page


def write_explorer(path: str | Path, maps: AttentionMaps, image, index: int = 0, alpha: float = 0.1,
                   beta: float = 0.2, **kwargs: Any) -> Path:
    """Write the explorer page to ``path`` atomically; returns the path."""
    path = Path(path)
    page = explorer_html(maps, image, index, alpha, beta, **kwargs)
    with atomic_write(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
