"""Results that show themselves in Jupyter: small, escaped HTML for the ``_repr_html_`` of patchfield's objects.

Every text that reaches the page goes through :func:`html.escape`; figures are inlined as base64 PNGs
(``<img src="data:image/png;base64,...">``) at a low resolution, so a result stays a few tens of kB and
nothing is fetched. The builders (:func:`analysis_html`, :func:`attention_html`, :func:`claims_html`,
:func:`stats_html`) are what the objects' ``_repr_html_`` methods return; :class:`Explorer` is what
:func:`patchfield.explore` returns.
"""

from __future__ import annotations

import base64
import html
import io
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .analysis import Analysis
    from .capture import AttentionMaps
    from .claims.report import ClaimsReport
    from .stats.collect import HeadStats

__all__ = [
    "Explorer",
    "analysis_html",
    "attention_html",
    "card",
    "claims_html",
    "figure_img",
    "html_table",
    "png_img",
    "stats_html",
]

MAX_ROWS = 8
"""Rows of per-image tables shown before the rest are summarised in one line."""
_DPI = 60


def cell(value: Any, fmt: str = ".3g") -> str:
    """One escaped table cell: numbers formatted with ``fmt`` (``—`` when undefined), anything else as text.

    >>> cell(0.123456), cell(1234.56), cell(float("nan")), cell(None), cell("<b>"), cell(True)
    ('0.123', '1234.6', '—', '—', '&lt;b&gt;', 'yes')
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, ".1f") if abs(value) >= 1000 else format(value, fmt)
    return html.escape(str(value))


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> str:
    """A plain HTML table; every header and cell escaped (cells through :func:`cell`)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="patchfield">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_img(png: bytes, alt: str, width: int | None = None) -> str:
    """An ``<img>`` holding PNG bytes inline (``alt`` escaped)."""
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="{_data_uri(png)}" alt="{html.escape(alt)}"{size}/>'


def figure_img(fig: Figure, alt: str, dpi: int = _DPI) -> str:
    """A matplotlib figure as an inline PNG ``<img>`` (rendered at ``dpi`` to stay small)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return png_img(buf.getvalue(), alt)


def array_img(values: np.ndarray, alt: str, scale: int = 4, cmap: str = "viridis", max_px: int = 256) -> str:
    """A 2-D array as a colour-mapped inline PNG, each entry ``scale`` × ``scale`` pixels, at most ``max_px`` on a
    side (large arrays are box-filtered down; no matplotlib figure)."""
    import matplotlib
    from PIL import Image

    v = np.asarray(values, dtype=np.float64)
    lo, hi = (float(np.nanmin(v)), float(np.nanmax(v))) if v.size else (0.0, 0.0)
    norm = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    rgb = (matplotlib.colormaps[cmap](np.nan_to_num(norm))[..., :3] * 255).round().astype(np.uint8)
    h, w = v.shape[0] * scale, v.shape[1] * scale
    shrink = min(1.0, max_px / max(h, w, 1))
    size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
    image = Image.fromarray(rgb).resize(size, Image.NEAREST if shrink == 1.0 else Image.BOX)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return png_img(buf.getvalue(), alt)


def _shrunk(png: bytes, width: int) -> bytes:
    """PNG bytes scaled down to at most ``width`` pixels wide."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def card(title: str, *parts: str) -> str:
    """A titled block of already-built HTML parts (``title`` escaped)."""
    return (f'<div class="patchfield-result"><div><strong>{html.escape(title)}</strong></div>'
            + "".join(f"<div>{p}</div>" for p in parts) + "</div>")


def _more(total: int) -> str:
    return f"<div><em>… and {total - MAX_ROWS} more</em></div>" if total > MAX_ROWS else ""


def _neutral(grid, cell_px: int = 12) -> np.ndarray:
    """A light grey canvas with one cell per patch, for drawing per-patch maps without the photo."""
    return np.full((grid.height * cell_px, grid.width * cell_px, 3), 225, dtype=np.uint8)


def analysis_figure(result: Analysis, index: int = 0) -> Figure:
    """``U``, the windows of a few patches and the responsive-field sizes with ``D`` of image ``index``."""
    from .drawing import new_figure, show_patch_map
    from .figures.maps import default_patches, draw_dip, draw_uncertainty, draw_windows

    fig = new_figure(12.0, 3.4)
    left, middle, right = fig.subplots(1, 3)
    canvas = _neutral(result.grid)
    draw_uncertainty(left, result.U[index], f"U (N = {result.grid.n})")
    draw_windows(middle, canvas, result.windows[index], default_patches(result.grid),
                 f"windows at alpha = {result.alpha:g}")
    if bool(result.dropped[index].any()):
        draw_dip(right, canvas, result.dropped[index], result.grid)
        show_patch_map(right, canvas, result.field.size[index], result.grid, cmap="magma", alpha=0.55,
                       label="|S_p|", title=f"field size |S_p|, D shaded (beta = {result.beta:g})")
    else:
        show_patch_map(right, canvas, result.field.size[index], result.grid, cmap="magma", alpha=0.85,
                       label="|S_p|", title="responsive-field size |S_p|")
    return fig


def analysis_html(result: Analysis) -> str:
    """The ``_repr_html_`` of :class:`patchfield.Analysis`: settings, a per-image table, the figure of image 0."""
    g = result.grid
    predicted = result.predicted_classes()
    o, ow = result.interactions(), result.windows.interactions()
    rows = []
    for i in range(min(result.batch_size, MAX_ROWS)):
        rows.append([i, None if predicted is None else int(predicted[i]), int(o[i]), int(ow[i]),
                     int(result.dropped[i].sum()), float(result.field.size[i].float().mean()),
                     bool(result.U[i].amax() == result.U[i].amin())])
    settings = html_table(
        ["images", "grid", "N", "prefix tokens", "alpha", "beta", "E_O", "E_O / N²"],
        [[result.batch_size, f"{g.height}×{g.width}", g.n, result.num_prefix_tokens, result.alpha, result.beta,
          result.expected_interactions(), result.expected_interactions() / g.n ** 2]])
    per_image = html_table(["image", "predicted class", "O", "O of the windows", "|D|", "mean |S_p|", "degenerate"],
                           rows)
    fig = analysis_figure(result, 0)
    return card("patchfield analysis", settings, per_image + _more(result.batch_size),
                figure_img(fig, "U, adaptive windows and responsive-field sizes of image 0"))


def attention_html(maps: AttentionMaps) -> str:
    """The ``_repr_html_`` of :class:`patchfield.AttentionMaps`: shape, layers and the mean-of-heads patch block of
    the last captured layer for image 0."""
    g = maps.grid
    table = html_table(
        ["attn", "dtype", "layers", "heads", "grid", "prefix tokens", "logits"],
        [[" × ".join(map(str, maps.attn.shape)), str(maps.attn.dtype).removeprefix("torch."),
          ", ".join(map(str, maps.layers)), maps.num_heads, f"{g.height}×{g.width}", maps.num_prefix_tokens,
          None if maps.logits is None else " × ".join(map(str, maps.logits.shape))]])
    parts = [table]
    if maps.attn.numel():
        block = maps.patch_block()[0, -1].float().mean(0).cpu().numpy()  # [N, N]
        scale = max(1, min(8, 192 // max(block.shape[0], 1)))
        parts.append(array_img(block, f"mean-of-heads attention between patches, layer {maps.layers[-1]}", scale)
                     + f"<div><small>image 0, layer {maps.layers[-1]}, mean of heads: row p attends to column i"
                     "</small></div>")
    return card("patchfield attention maps", *parts)


def claims_html(report: ClaimsReport) -> str:
    """The ``_repr_html_`` of :class:`patchfield.ClaimsReport`: one table per setting (each claim and null row with
    its two verdicts and the verdict derived from them), then its plot."""
    from .claims.report import CLAIMS, _cmp, _ms

    skipped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.skipped.items()) or "none"
    parts = [html.escape(f"{report.images} images (skipped: {skipped}); grid {report.grid[0]}×{report.grid[1]}; "
                         f"random weights: {report.random_inits} initialisation(s)")]
    for setting in report.summary()["settings"]:
        rows = []
        for key, (text, null) in CLAIMS.items():
            c = setting["claims"][key]
            trained = _ms(c["gap"]["trained"]) if key == "field_size" else _ms(c["trained"])
            random = _ms(c["gap"]["random"]) if key == "field_size" else _ms(c["random"])
            rows.append([text.split(":")[0], null, trained, random, _cmp(c["vs_null"]), _cmp(c["vs_random"]),
                         c["verdict_vs_chance"], c["verdict_vs_random"], c["verdict"]])
        parts.append(html_table(["claim", "null", "trained", "random weights", "trained − null (95% CI)",
                                 "trained − random (95% CI)", "vs chance", "vs random weights", "verdict"], rows,
                                caption=f"α = {setting['alpha']:g}, β = {setting['beta']:g}"))
    if report.images:
        with tempfile.TemporaryDirectory() as tmp:
            path = report.plot(Path(tmp) / "claims.png")
            plot = _shrunk(path.read_bytes(), 480)
        parts.append(png_img(plot, "per-image distributions of trained, random and null"))
    return card(f"patchfield claims: {report.model}", *parts)


def stats_html(stats: HeadStats) -> str:
    """The ``_repr_html_`` of :class:`patchfield.HeadStats`: per-layer means over heads and images, the artefact
    summary, and the per-head mean distance and entropy."""
    from .drawing import new_figure
    from .figures.stats import draw_head_scatter
    from .stats.collect import summarize_images

    s = summarize_images([stats.image_record(i) for i in range(stats.batch_size)])
    dist = stats.mean_distance.double().mean(0)  # [L, k]
    ent = stats.entropy.double().mean(0)
    cls = None if stats.cls_attention is None else stats.cls_attention.double().mean(0)
    layers = [[layer, float(dist[layer].mean()), float(ent[layer].mean()),
               None if cls is None else float(cls[layer])] for layer in range(dist.shape[0])]
    per_layer = html_table(["layer", "mean distance (px)", "entropy (nats)", "CLS attention on patches"], layers)
    summary = html_table(
        ["images", "with artefacts", "artefact share in D", "D share", "Spearman(norm, column variance)"],
        [[s["images"], s["images_with_artefacts"], s["artefact_share_in_D"], s["D_share"],
          s["spearman_norm_colvar"]]])
    fig = new_figure(8.0, 2.8)
    a, b = fig.subplots(1, 2)
    draw_head_scatter(a, dist, "pixels", "mean attention distance")
    draw_head_scatter(b, ent, "nats", "attention entropy", math.log(stats.grid.n), "ln N (uniform)")
    return card(f"patchfield head statistics ({stats.grid.height}×{stats.grid.width} grid, beta = {stats.beta:g})",
                summary, per_layer, figure_img(fig, "mean attention distance and entropy per head and layer"))


class Explorer:
    """The interactive explorer page of one image, shown inline in Jupyter (an ``iframe`` whose ``srcdoc`` holds
    the whole page, escaped; nothing is fetched) and written with :meth:`save`.

    Attributes:
        page: the self-contained HTML page (:func:`patchfield.explorer.explorer_html`).
        height: the iframe's height in pixels.
    """

    def __init__(self, page: str, height: int = 720) -> None:
        self.page = page
        self.height = int(height)

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.page, quote=True)}" style="width:100%;border:0" '
                f'height="{self.height}" sandbox="allow-scripts" title="patchfield explorer"></iframe>')

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` atomically (``.html`` added when it has no suffix); returns the path."""
        from .utils.io import atomic_write

        path = Path(path)
        path = path if path.suffix else path.with_suffix(".html")
        with atomic_write(path) as tmp:
            tmp.write_text(self.page, encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return f"Explorer({len(self.page) / 1e6:.1f} MB page; .save(path) writes it)"
