"""The explorer page: payload checks in Python, then the page driven in headless Chromium.

The browser tests compare every window, ``D``, field size and extent and ``E_O`` the page computes
in JavaScript with patchfield's Python results for the same ``alpha`` and ``beta``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import patchfield as pf
from patchfield.cli import main
from patchfield.explorer import explorer_html, explorer_payload
from patchfield.stats import attention_entropy, head_statistics, mean_attention_distance


def _maps(grid: int, layers: int = 3, heads: int = 2, prefix: int = 1, seed: int = 0, width: int | None = None
          ) -> pf.AttentionMaps:
    g = torch.Generator().manual_seed(seed)
    width = width or grid
    t = prefix + grid * width
    attn = torch.softmax(3 * torch.randn(1, layers, heads, t, t, generator=g), dim=-1)
    return pf.AttentionMaps(attn, pf.Grid(grid, width), prefix, tuple(range(layers)))


def _image(size: int, width: int | None = None) -> np.ndarray:
    width = width or size
    y, x = np.mgrid[0:size, 0:width]
    return np.stack([x * 255 // width, y * 255 // size, (x + y) * 127 // (size + width)], -1).astype(np.uint8)


def _payload_of(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="pf-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_payload_is_exact_and_self_contained():
    maps = _maps(4)
    U = pf.interaction_uncertainty(maps.patch_block())
    page = explorer_html(maps, _image(32), 0, 0.1, 0.2, title="t <x>")
    assert "http://" not in page and "https://" not in page and "t &lt;x&gt;" in page
    data = _payload_of(page)
    got = np.frombuffer(base64.b64decode(data["U"]), dtype="<f4").reshape(16, 16)
    np.testing.assert_array_equal(got, U[0].numpy())  # float32, bit for bit
    var = np.frombuffer(base64.b64decode(data["column_variance"]), dtype="<f4")
    np.testing.assert_array_equal(var, pf.column_variance(U[0]).numpy())
    full = data["attention"]["full"]
    q = np.frombuffer(base64.b64decode(full["q"]), dtype=np.uint8).reshape(3, 2, 16, 16)
    scale = np.frombuffer(base64.b64decode(full["scale"]), dtype="<f4").reshape(3, 2, 16)
    block = maps.patch_block()[0].double().numpy()
    np.testing.assert_allclose(q / 255 * scale[..., None], block, atol=block.max() / 255 / 2 + 1e-9)
    np.testing.assert_allclose(scale, block.max(-1), rtol=1e-6)
    stats = data["head_stats"]  # per layer and head, 8-pixel patches (32 pixels over 4 patches)
    assert stats["patch_size"] == [8.0, 8.0]
    tblock = torch.from_numpy(block)
    np.testing.assert_allclose(stats["mean_distance"], mean_attention_distance(tblock, (4, 4), 8), atol=1e-4)
    np.testing.assert_allclose(stats["entropy"], attention_entropy(tblock), atol=1e-5)
    assert "artefacts" not in data
    norms = torch.full((16,), 10.0) + torch.linspace(0, 1, 16)
    norms[[3, 9]] = 100.0
    with_norms = explorer_payload(maps, _image(32), norms=norms, norm_block=2, patch_size=(4, 4))
    assert with_norms["artefacts"]["tokens"] == [3, 9] and with_norms["artefacts"]["block"] == 2
    np.testing.assert_allclose(with_norms["head_stats"]["mean_distance"],
                               mean_attention_distance(tblock, (4, 4), 4), atol=1e-4)
    small = explorer_payload(maps, _image(32), full_attention=False)
    assert "full" not in small["attention"] and "layer_mean" in small["attention"]
    with pytest.raises(ValueError, match="alpha"):
        explorer_payload(maps, _image(32), alpha=0.0)
    with pytest.raises(ValueError, match="outside"):
        explorer_payload(maps, _image(32), patch=16)


# ---------------------------------------------------------------- headless Chromium

def _chromium() -> str | None:
    for path in (os.environ.get("PATCHFIELD_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -c constraints.txt playwright)"
    exe = _chromium()
    if reason is None and exe is None:
        reason = "no Chromium at /usr/bin/chromium (make test installs Debian's chromium where apt-get works)"
    if reason:
        warnings.warn(f"browser test skipped: {reason}", stacklevel=1)
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _open(browser, path: Path, width: int = 1280):
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: errors.append(f"network request {r.url}") if not r.url.startswith(("file:", "data:"))
            else None)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    return page, errors


def _state(page) -> dict:
    page.wait_for_function("document.body.dataset.pending !== '1'", timeout=10000)  # the redraw has run
    return page.locator("#state").evaluate("e => Object.assign({}, e.dataset)")


def _check_against_python(state: dict, U: torch.Tensor, grid: pf.Grid) -> None:
    alpha, beta = float(state["alpha"]), float(state["beta"])
    w = pf.adaptive_windows(U, alpha, grid)
    d = pf.indiscriminative_patches(U, beta)
    f = pf.responsive_field(w, d)
    eo = int(f.interactions()) if bool(d.any()) else int(w.interactions())
    assert state["windows"] == ";".join(",".join(map(str, b)) for b in w.bounds().tolist())
    assert state["dropped"] == ",".join(map(str, torch.nonzero(d).flatten().tolist()))
    assert state["sizes"] == ",".join(map(str, f.size.tolist()))
    assert state["extents"] == ";".join(",".join(map(str, b)) for b in f.extent.tolist())
    assert int(state["eo"]) == eo
    assert int(state["tsel"]) == pf.grid.round_half_up(alpha * grid.n * grid.n)
    assert int(state["dcount"]) == int(d.sum())
    p = int(state["selected"])
    assert state["window"] == ",".join(map(str, w.bounds()[p].tolist()))
    assert int(state["fieldSize"]) == int(f.size[p])
    assert [float(v) for v in state["offset"].split(",")] == f.offset[p].tolist()
    np.testing.assert_allclose([float(v) for v in state["tendency"].split(",")], f.tendency[p].tolist(), atol=1e-6)


def _check_head_stats(page, stats, layer: int) -> None:
    """Every head's mean distance and entropy beside its thumbnails equal patchfield.stats' numbers."""
    def numbers(selector):
        return page.locator(selector).evaluate_all(
            "fs => fs.map(f => [Number(f.dataset.distance), Number(f.dataset.entropy), f.textContent])")

    heads = numbers("#thumbs-heads figure")
    k = stats.mean_distance.shape[-1]
    assert len(heads) == k
    for h, (d, e, text) in enumerate(heads):
        assert d == pytest.approx(float(stats.mean_distance[0, layer, h]), abs=1e-4)
        assert e == pytest.approx(float(stats.entropy[0, layer, h]), abs=1e-5)
        assert f"{d:.1f} px" in text and f"{e:.2f} nats" in text
    full = numbers("#thumbs-full figure")
    np.testing.assert_allclose([f[0] for f in full], stats.mean_distance[0].flatten().tolist(), atol=1e-4)
    np.testing.assert_allclose([f[1] for f in full], stats.entropy[0].flatten().tolist(), atol=1e-5)


@pytest.mark.browser
def test_explore_cli_page_in_chromium(browser, tmp_path):
    import timm
    from safetensors.torch import save_file

    from patchfield.images import read_image
    from patchfield.preprocess import Preprocess

    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=96, num_classes=3).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    Image.fromarray(_image(120)).save(tmp_path / "img.png")
    out = tmp_path / "page.html"
    assert main(["explore", str(tmp_path / "img.png"), "--model", "test_vit", "--weights",
                 str(tmp_path / "w.safetensors"), "--image-size", "96", "--out", str(out)]) == 0
    x, _ = Preprocess.for_model(model)(read_image(tmp_path / "img.png"))
    U = pf.interaction_uncertainty(pf.capture_attention(model, x[None]).patch_block())[0]
    grid = pf.Grid(6, 6)
    stats = head_statistics(model, x[None])

    page, errors = _open(browser, out)
    state = _state(page)
    assert (state["alpha"], state["beta"], state["selected"]) == ("0.1", "0.2", str(3 * 6 + 3))
    _check_against_python(state, U, grid)
    _check_head_stats(page, stats, layer=int(state["layer"]))
    assert state["artefacts"] == ",".join(map(str, stats.artefacts[0].tokens)) and state["showArtefacts"] == "0"
    page.locator("#main").focus()
    page.keyboard.press("n")
    assert _state(page)["showArtefacts"] == "1"
    page.keyboard.press("n")
    box = page.locator("#main").bounding_box()  # click patch (x 4, y 1)
    page.mouse.click(box["x"] + box["width"] * 4.5 / 6, box["y"] + box["height"] * 1.5 / 6)
    state = _state(page)
    assert state["selected"] == str(1 * 6 + 4)
    slider = page.locator("#alpha").bounding_box()  # move the alpha slider with the mouse
    page.mouse.click(slider["x"] + slider["width"] * 0.3, slider["y"] + slider["height"] / 2)
    state = _state(page)
    assert 0.2 < float(state["alpha"]) < 0.4
    _check_against_python(state, U, grid)
    page.locator("#beta").focus()
    for _ in range(15):
        page.keyboard.press("ArrowRight")  # keyboard: beta 0.2 -> 0.35
    state = _state(page)
    assert state["beta"] == "0.35"
    _check_against_python(state, U, grid)
    page.locator("#main").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("t")
    state = _state(page)
    assert state["selected"] == str(2 * 6 + 3) and state["view"] == "tendency"
    _check_against_python(state, U, grid)
    page.keyboard.press("a")
    page.keyboard.press("[")  # attention view, one layer down; then head 1 of that layer
    page.keyboard.press(".")
    page.keyboard.press(".")
    state = _state(page)
    assert (state["view"], state["layer"], state["head"]) == ("attention", "4", "1")
    _check_head_stats(page, stats, layer=4)  # the head captions follow the layer
    page.keyboard.press("Escape")  # unpinned: hovering shows the patch under the pointer
    page.mouse.move(box["x"] + box["width"] * 0.5 / 6, box["y"] + box["height"] * 5.5 / 6)
    state = _state(page)
    assert (state["pinned"], state["selected"]) == ("0", str(5 * 6 + 0))
    page.keyboard.press("f")
    page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
    assert (tmp_path / "explorer.png").stat().st_size > 10_000
    assert errors == []
    page.close()


@pytest.mark.browser
def test_page_breaks_ties_like_python(browser, tmp_path):
    """A map with many equal entries and equal columns: selections at the tie must agree exactly."""
    maps = _maps(5, seed=2)
    g = torch.Generator().manual_seed(5)
    U = torch.randint(0, 4, (25, 25), generator=g).float() / 4
    U[:, 7] = U[:, 3]  # equal column variances
    U[:, 11] = U[:, 3]
    path = tmp_path / "ties.html"
    norms = torch.linspace(5, 6, 25)
    norms[[2, 18]] = 60.0  # two planted high-norm tokens
    path.write_text(explorer_html(maps, _image(40), 0, 0.1, 0.2, U=U, norms=norms))
    page, errors = _open(browser, path)
    assert _state(page)["artefacts"] == "2,18"
    before = page.locator("#main").screenshot()
    page.locator("#show-artefacts").check()
    assert _state(page)["showArtefacts"] == "1" and page.locator("#main").screenshot() != before
    page.locator("#show-artefacts").uncheck()
    for alpha, beta in (("0.1", "0.2"), ("0.333", "0.12"), ("0.05", "0.5"), ("1", "0"), ("0.001", "0.04")):
        page.locator("#alpha").fill(alpha)
        page.locator("#beta").fill(beta)
        state = _state(page)
        assert (state["alpha"], state["beta"]) == (alpha, beta)
        _check_against_python(state, U, pf.Grid(5, 5))
    wide = _maps(3, seed=4, width=5)  # a non-square grid, 3 rows by 5 columns
    U = pf.interaction_uncertainty(wide.patch_block())[0]
    path = tmp_path / "wide.html"
    path.write_text(explorer_html(wide, _image(24, 40), 0, 0.2, 0.3))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    box = page.locator("#main").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 4.5 / 5, box["y"] + box["height"] * 0.5 / 3)
    state = _state(page)
    assert state["selected"] == "4"
    _check_against_python(state, U, pf.Grid(3, 5))
    assert errors == []
    page.close()


@pytest.mark.browser
def test_page_stays_responsive_at_576_patches(browser, tmp_path):
    """A 24x24 grid (384-pixel input, 16-pixel patches): slider updates recompute in well under a frame budget."""
    maps = _maps(24, layers=2, heads=2, seed=3)
    U = pf.interaction_uncertainty(maps.patch_block())[0]
    path = tmp_path / "n576.html"
    path.write_text(explorer_html(maps, _image(384), 0, 0.1, 0.2))
    page, errors = _open(browser, path)
    times = []
    for alpha, beta in (("0.2", "0.3"), ("0.05", "0.1"), ("0.5", "0.6")):
        page.locator("#alpha").fill(alpha)
        page.locator("#beta").fill(beta)
        state = _state(page)
        times.append(float(state["computeMs"]))
    _check_against_python(state, U, pf.Grid(24, 24))
    assert max(times) < 250, times
    page.locator("#main").focus()
    page.keyboard.press("u")  # the N x N matrix view draws
    assert _state(page)["view"] == "matrix"
    page.screenshot(path=str(tmp_path / "matrix576.png"))
    assert errors == []
    page.close()
