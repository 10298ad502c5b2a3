"""Results that show themselves in Jupyter: the ``_repr_html_`` of patchfield's objects and ``pf.explore``."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

import patchfield as pf
from patchfield.display import cell, html_table


@pytest.fixture(scope="module")
def demo():
    """The shipped demo ViT (8×8 grid, 4 layers, 4 heads) and 8 validation images with masks."""
    from patchfield.data import build_dataset
    from patchfield.demo import demo_models_dir
    from patchfield.training import load_run
    from patchfield.training.sources import model_normalisation

    vit, _ = load_run(demo_models_dir() / "vit")
    val = build_dataset("synthetic", "val", 32, num_images=8, **model_normalisation(vit))
    return vit, val, torch.stack([val[i][0] for i in range(3)])


def _images(page: str) -> list[Image.Image]:
    """Every inline PNG of a page, decoded (fails when one is not a PNG)."""
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(b, validate=True))) for b in found]


def _rows(page: str) -> list[list[str]]:
    """The body rows of every table of a page, in order (header rows left out)."""
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", page)]
    return [r for r in rows if r]


def test_table_escapes_text_and_formats_numbers() -> None:
    page = html_table(["<a>", "b&c"], [["<script>alert(1)</script>", 0.5], [None, float("nan")]], caption='"x"')
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<th>&lt;a&gt;</th><th>b&amp;c</th>" in page and "<caption>&quot;x&quot;</caption>" in page
    assert _rows(page) == [["&lt;script&gt;alert(1)&lt;/script&gt;", "0.5"], ["—", "—"]]
    assert cell(3) == "3" and cell(2.0 / 3) == "0.667" and cell(False) == "no"


def test_analysis_shows_its_table_and_figure(demo) -> None:
    vit, _, x = demo
    res = pf.analyze(vit, x, 0.1, 0.2)
    page = res._repr_html_()
    rows = _rows(page)
    e_o = res.expected_interactions()
    assert rows[0] == ["3", "8×8", "64", "1", "0.1", "0.2", format(e_o, ".1f" if e_o >= 1000 else ".3g"),
                       format(e_o / 64**2, ".3g")]
    o, ow, pred = res.interactions(), res.windows.interactions(), res.predicted_classes()
    for i, row in enumerate(rows[1:]):
        assert row[:5] == [str(i), str(int(pred[i])), str(int(o[i])), str(int(ow[i])), str(int(res.dropped[i].sum()))]
        assert row[6] == "no"
    assert len(rows) == 1 + 3
    (fig,) = _images(page)
    assert fig.format == "PNG" and fig.width > 3 * fig.height  # three panels side by side
    assert len(page) < 80_000


def test_analysis_table_is_cut_after_eight_images(demo) -> None:
    vit, val, _ = demo
    res = pf.analyze(vit, torch.stack([val[i % 8][0] for i in range(10)]), 0.1, 0.0)
    page = res._repr_html_()
    assert len(_rows(page)) == 1 + 8 and "… and 2 more" in page
    assert _rows(page)[1][4] == "0"  # beta 0: D is empty


def test_attention_maps_show_shape_layers_and_a_thumbnail(demo) -> None:
    vit, _, x = demo
    maps = pf.capture_attention(vit, x, layers=[1, -1])
    page = maps._repr_html_()
    assert _rows(page) == [["3 × 2 × 4 × 65 × 65", "float32", "1, 3", "4", "8×8", "1", "3 × 4"]]
    (thumb,) = _images(page)
    assert thumb.size == (64 * 3, 64 * 3)  # N × N entries, 3 pixels each
    assert "layer 3, mean of heads" in page


def test_large_attention_thumbnail_stays_small() -> None:
    from patchfield.display import array_img

    x = np.linspace(0, 6, 576)
    page = array_img(np.exp(-np.subtract.outer(x, x) ** 2) + 0.1 * np.sin(7 * x)[None], "ViT-B/16 at 384")
    (thumb,) = _images(page)
    assert thumb.size == (256, 256) and len(page) < 100_000  # 576² entries drawn in 256² pixels


def test_claims_report_shows_verdicts_and_plot(demo) -> None:
    from patchfield.data.masks import WithMasks

    vit, val, _ = demo
    report = pf.measure_claims(vit, WithMasks(val), (0.1,), (0.2,), random_inits=1, model_name="<vit & co>")
    page = report._repr_html_()
    assert "patchfield claims: &lt;vit &amp; co&gt;" in page and "<vit" not in page
    rows = _rows(page)
    claims = report.summary()["settings"][0]["claims"]
    keys = ("dip_on_background", "dip_on_background_content", "field_size", "tendency_to_object",
            "tendency_to_object_shuffled")
    assert [r[0] for r in rows] == ["D lies on the background", "D lies on the background, beyond image content",
                                    "object fields are smaller", "background tendencies point at the object",
                                    "background tendencies point at their own object"]
    assert [r[-3:] for r in rows] == [[claims[k]["verdict_vs_chance"], claims[k]["verdict_vs_random"],
                                       claims[k]["verdict"]] for k in keys]
    assert rows[0][2].startswith(f"{claims['dip_on_background']['trained']['mean']:.3f} ± ")
    assert "α = 0.1, β = 0.2" in page
    (plot,) = _images(page)
    assert plot.width == 480


def test_head_statistics_show_per_layer_table_and_figure(demo) -> None:
    vit, _, x = demo
    stats = pf.head_statistics(vit, x, beta=0.2)
    page = stats._repr_html_()
    rows = _rows(page)
    assert rows[0][:2] == ["3", str(sum(f.found for f in stats.artefacts))]
    dist = stats.mean_distance.double().mean(0).mean(-1)
    ent = stats.entropy.double().mean(0).mean(-1)
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    for layer, row in enumerate(rows[1:]):
        assert row[1] == format(float(dist[layer]), ".3g") and row[2] == format(float(ent[layer]), ".3g")
    assert len(_images(page)) == 1


def test_explore_renders_inline_and_saves(demo, tmp_path) -> None:
    vit, _, x = demo
    shown = pf.explore(vit, x[0], 0.2, 0.1, patch=5, title="a <b> & 'c'")
    frame = shown._repr_html_()
    match = re.fullmatch(r'<iframe srcdoc="([^"]*)" style="width:100%;border:0" height="720" '
                         r'sandbox="allow-scripts" title="patchfield explorer"></iframe>', frame)
    assert match, frame[:200]
    assert "<" not in match.group(1) and ">" not in match.group(1)  # all of the page escaped into the attribute
    page = html.unescape(match.group(1))
    assert page == shown.page
    assert "<title>a &lt;b&gt; &amp; &#x27;c&#x27;</title>" in page
    assert "http://" not in page and "https://" not in page and 'src="//' not in page  # nothing fetched
    assert '"alpha":0.2' in page and '"beta":0.1' in page and "<script>" in page
    assert '"full":{"q":' in page  # auto: the demo's 4 × 4 × 64² entries, every layer and head, are embedded
    assert '"full":{"q":' not in pf.explore(vit, x[0], full_attention=False).page
    saved = shown.save(tmp_path / "page")
    assert saved.name == "page.html" and saved.read_text(encoding="utf-8") == page
    assert shown.save(tmp_path / "x.htm").read_text(encoding="utf-8") == page
