"""Figure functions and the figure-writing commands, on tiny models built in the test."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import patchfield as pf
from patchfield import figures as F
from patchfield.cli import main


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny timm ViT (test_vit at 64 px: a 4x4 grid, 6 layers) saved as safetensors."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=3)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    paths = []
    for name, size in (("a", (80, 64)), ("b", (64, 96))):
        p = folder / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    bad = folder / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return paths, bad


def test_analyze_writes_json_and_basic_figures(weights, image_files, tmp_path, capsys):
    (a, b), bad = image_files
    out = tmp_path / "out"
    code = main(["analyze", str(a), str(bad), str(b), "--model", "test_vit", "--weights", str(weights),
                 "--image-size", "64", "--alpha", "0.1", "--beta", "0.25", "--out", str(out)])
    assert code == 1
    assert "corrupt.png" in capsys.readouterr().err
    assert not (out / "corrupt").exists()
    for name in ("a", "b"):
        record = json.loads((out / name / "fields.json").read_text())
        assert record["grid"] == [4, 4]
        assert set(record["figures"]) == {"uncertainty", "windows", "dip", "field_size", "tendency"}
        for file in record["figures"].values():
            with Image.open(out / name / file) as im:
                assert im.format == "PNG" and im.width > 100 and im.height > 100
        leftovers = [p.name for p in (out / name).iterdir() if p.name.startswith(".")]
        assert leftovers == []


# ---------------------------------------------------------------- figure functions on a tiny model


@pytest.fixture(scope="module")
def scene():
    """Tiny random ViT (4x4 grid, 6 layers, 2 heads) on two 64-px synthetic images with object masks."""
    import timm

    from patchfield.data import SyntheticShapes

    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=3).eval()
    ds = SyntheticShapes(2, image_size=64)
    x, _ = ds.batch([0, 1])
    maps = pf.capture_attention(model, x)
    U = pf.interaction_uncertainty(maps.patch_block())
    windows, dropped, field = pf.analyze_map(U, maps.grid, 0.1, 0.25)
    images = [ds.raw_image(i) for i in range(2)]
    masks = [ds.object_mask(i).numpy() for i in range(2)]
    return dict(maps=maps, U=U, windows=windows, dropped=dropped, field=field, images=images, masks=masks)


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def _overlays(fig: Figure, shape) -> int:
    """Number of image layers drawn at the image's full resolution."""
    return sum(1 for ax in fig.axes for im in ax.get_images() if im.get_array().shape[:2] == shape[:2])


def _colorbars(fig: Figure) -> int:
    return sum(1 for ax in fig.axes if ax.get_label() == "<colorbar>")


def test_basic_maps(scene):
    img, g = scene["images"][1], scene["maps"].grid
    fig = F.plot_uncertainty(scene["U"], 1)
    assert isinstance(fig, Figure) and _colorbars(fig) == 1
    assert fig.axes[0].get_images()[0].get_array().shape == (g.n, g.n)
    fig = F.plot_windows(img, scene["windows"], [0, 5], index=1)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    areas = scene["windows"].area()[1]
    assert legend == [f"patch 0: {int(areas[0])} cells", f"patch 5: {int(areas[5])} cells"]
    fig = F.plot_dip(img, scene["dropped"], g, 1, beta=0.25)
    assert "4 of 16" in fig.axes[0].get_legend().get_texts()[0].get_text()  # round(0.25 * 16) = 4
    fig = F.plot_field_size(img, scene["field"], 1)
    assert _colorbars(fig) == 1 and _overlays(fig, img.shape) == 2
    overlay = fig.axes[0].get_images()[1].get_array()
    size = scene["field"].size[1].reshape(4, 4).numpy()
    np.testing.assert_array_equal(overlay[::16, ::16], size)  # 16-px cells: full resolution, one value per patch
    fig = F.plot_tendency_arrows(img, scene["field"], 1)
    assert len(fig.axes[0].collections) >= 1
    with pytest.raises(ValueError, match="outside"):
        F.plot_windows(img, scene["windows"], [16], index=0)


def test_attention_figures(scene):
    maps, img, g = scene["maps"], scene["images"][0], scene["maps"].grid
    L, k = maps.attn.shape[1], maps.attn.shape[2]
    fig = F.plot_pair_attention(maps, scene["masks"][0], img, 0, seed=1)
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "layer"
    lines = fig.axes[1].get_lines()
    a, b, c = F.sample_pair(F.patch_mask(scene["masks"][0], g), seed=1)
    attn = maps.attn[0, :, :, maps.num_prefix_tokens:, maps.num_prefix_tokens:].double()
    np.testing.assert_allclose(lines[0].get_ydata(), attn[:, :, a, b].mean(1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(lines[1].get_ydata(), attn[:, :, a, c].mean(1).numpy(), rtol=1e-5)
    fig = F.plot_layer_attention(maps, img, [1, 6], 0)
    assert len(fig.axes) == 2 * (L + 1) + 2 and _colorbars(fig) == 2
    assert _titles(fig)[1:L + 1] == [f"A_{i + 1}" for i in range(L)]
    fig = F.plot_head_uncertainty(maps, img, [3], 0)
    assert len(fig.axes) == (k + 1) + 1
    fig = F.plot_uncertainty_rows(scene["U"], img, g, [0, 5, 10], 0)
    assert _colorbars(fig) == 3 and _overlays(fig, img.shape) == 6
    inner, outer = F.pair_attention(maps, F.patch_mask(np.stack(scene["masks"]), g))
    fig = F.plot_pair_attention_dataset(inner, outer, maps.layers)
    assert len(fig.axes) == 2 and "2 images" in fig.axes[0].get_title()


def test_window_and_field_figures(scene):
    img, g, U = scene["images"][0], scene["maps"].grid, scene["U"]
    fig = F.plot_global_vs_window(img, scene["windows"], 5, 0)
    assert _titles(fig) == ["(a) global attention: 16 patches",
                            f"(c) adaptive window: {int(scene['windows'].area()[0, 5])} patches"]
    fig = F.plot_indiscriminative(U, img, g, 0.25, 0)
    assert len(fig.axes) == 4 and _colorbars(fig) == 1  # U, variances, image + U's colour bar
    dots = fig.axes[1].collections[0].get_offsets()
    var = pf.column_variance(U[0].double()).numpy()
    np.testing.assert_allclose(np.asarray(dots)[:, 1], np.sort(var)[:4], rtol=1e-4, atol=1e-30)
    fig = F.plot_dip_betas(U, img, g, (0.1, 0.5), 0)
    assert _titles(fig) == ["image", "beta = 0.1", "beta = 0.5"]
    fig = F.plot_responsive_field(img, scene["field"], 0)
    assert len(fig.axes) == 5 and _colorbars(fig) == 1
    flow = fig.axes[1].get_images()[0].get_array()
    assert flow.shape == img.shape  # full resolution
    fig = F.plot_tendency_flow(img, scene["field"], 0)
    assert len(fig.axes) == 2


def _winft_windows_loop(model, x):
    """Float64 reference of WinfT's rule: W[i, j] = sigmoid(s)[i, j] > mean over all T keys of row i."""
    inputs = []
    hooks = [blk.attn.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for blk in model.blocks]
    model(x)
    for h in hooks:
        h.remove()
    out = []
    for blk, z in zip(model.blocks, inputs):
        a = blk.attn
        b, t, _ = z.shape
        qkv = a.qkv(z).double().reshape(b, t, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        s = (qkv[0] @ qkv[1].transpose(-2, -1)).mean(1)  # [B, T, T] mean over heads, unscaled
        w = 1 / (1 + torch.exp(-s))
        out.append((w > w.mean(-1, keepdim=True))[:, 1:, 1:])
    return torch.stack(out, 1)


def test_winft_figure_uses_the_models_windows(scene):
    from conftest import tiny_vit

    from patchfield.models import apply_winft

    model = apply_winft(tiny_vit(depth=3), "paper")
    torch.manual_seed(3)
    x = torch.randn(2, 3, 32, 32)
    pred = F.winft_windows(model, x)
    ref = _winft_windows_loop(model, x)
    assert pred.shape == (2, 3, 16, 16)
    assert (pred != ref).float().mean() < 1e-3  # float32 forward vs float64 loop: ties at the threshold only
    gt = scene["field"].mask()[0]
    fig = F.plot_winft_windows(gt, pred[0], scene["images"][0])
    assert len(fig.axes) == 5 and _colorbars(fig) == 2
    votes = fig.axes[2].get_images()[0].get_array()
    np.testing.assert_array_equal(votes, pred[0].numpy().sum(0))
    with pytest.raises(ValueError, match="predicted must be"):
        F.plot_winft_windows(gt, pred[0, 0], None)
    with pytest.raises(ValueError, match="needs a WinfT model"):
        F.winft_windows(tiny_vit(), x)


# ---------------------------------------------------------------- reference checks of the statistics


def test_patch_mask_against_loops():
    rng = np.random.default_rng(0)
    mask = rng.random((2, 12, 18)) > 0.4
    g = pf.Grid(3, 4)  # cells of 4 x 4.5 pixels: uneven
    got = F.patch_mask(mask, g).numpy()
    for b in range(2):
        for p in range(g.n):
            y, x = divmod(p, g.width)
            cells = [(r, c) for r in range(12) for c in range(18)  # the patch holding the pixel's centre
                     if int((r + 0.5) * 3 // 12) == y and int((c + 0.5) * 4 // 18) == x]
            share = sum(mask[b, r, c] for r, c in cells) / len(cells)
            assert got[b, p] == (share >= 0.5)
    assert F.patch_mask(torch.tensor([True, False] * 6), g).tolist() == [True, False] * 6


def test_pair_attention_against_loops(scene):
    maps = scene["maps"]
    masks = F.patch_mask(np.stack(scene["masks"]), maps.grid)
    inner, outer = F.pair_attention(maps, masks)
    P, n = maps.num_prefix_tokens, maps.grid.n
    a = maps.attn.double().numpy()
    for b in range(2):
        m = masks[b].tolist()
        for li in range(a.shape[1]):
            ins, outs = [], []
            for p in range(n):
                for q in range(n):
                    v = sum(a[b, li, h, P + p, P + q] for h in range(a.shape[2])) / a.shape[2]
                    if m[p] and m[q] and p != q:
                        ins.append(v)
                    elif m[p] and not m[q]:
                        outs.append(v)
            assert inner[b, li].item() == pytest.approx(sum(ins) / len(ins), rel=1e-5)
            assert outer[b, li].item() == pytest.approx(sum(outs) / len(outs), rel=1e-5)
    none = torch.zeros(2, n, dtype=torch.bool)
    assert torch.isnan(F.pair_attention(maps, none)[0]).all()


def _baker_reference(u: float, v: float) -> tuple[int, int, int]:
    """Baker et al.'s computeColor for one unit-or-shorter vector, written out with plain loops."""
    import math

    ry, yg, gc, cb, bm, mr = 15, 6, 4, 11, 13, 6
    wheel = []
    wheel += [(255, math.floor(255 * i / ry), 0) for i in range(ry)]
    wheel += [(255 - math.floor(255 * i / yg), 255, 0) for i in range(yg)]
    wheel += [(0, 255, math.floor(255 * i / gc)) for i in range(gc)]
    wheel += [(0, 255 - math.floor(255 * i / cb), 255) for i in range(cb)]
    wheel += [(math.floor(255 * i / bm), 0, 255) for i in range(bm)]
    wheel += [(255, 0, 255 - math.floor(255 * i / mr)) for i in range(mr)]
    rad = math.hypot(u, v)
    a = math.atan2(-v, -u) / math.pi
    fk = (a + 1) / 2 * (len(wheel) - 1)
    k0 = math.floor(fk)
    k1 = (k0 + 1) % len(wheel)
    f = fk - k0
    out = []
    for c in range(3):
        col = ((1 - f) * wheel[k0][c] + f * wheel[k1][c]) / 255
        col = 1 - rad * (1 - col) if rad <= 1 else col * 0.75
        out.append(math.floor(255 * col + 0.5))
    return tuple(out)


def test_flow_colours_axis_hues_and_reference():
    # Image directions: u to the right, v down.  Documented hues of the Middlebury wheel:
    # right = red, down = yellow(-orange), left = cyan-blue, up = blue-violet.
    expected = {"right": (1.0, 0.0, 0, 10), "down": (0.0, 1.0, 40, 65), "left": (-1.0, 0.0, 180, 200),
                "up": (0.0, -1.0, 250, 275)}
    for name, (u, v, lo, hi) in expected.items():
        rgb = F.flow_to_color(np.array([u]), np.array([v]))[0]
        hue = colorsys.rgb_to_hsv(*(rgb / 255.0))[0] * 360
        assert lo <= hue <= hi, (name, rgb, hue)
        assert max(rgb) == 255 and min(rgb) == 0  # fully saturated at the largest magnitude
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=40), rng.normal(size=40)
    got = F.flow_to_color(u, v, max_magnitude=3.0)
    for j in range(40):
        assert tuple(got[j]) == _baker_reference(u[j] / 3.0, v[j] / 3.0)
    np.testing.assert_array_equal(F.flow_to_color(np.zeros(2), np.zeros(2)), 255)  # no motion: white
    with pytest.raises(ValueError, match="same shape"):
        F.flow_to_color(np.zeros(2), np.zeros(3))


def test_figures_cli_writes_everything(weights, image_files, tmp_path):
    (a, _), _ = image_files
    mask = np.zeros((80, 64), dtype=np.uint8)  # a's size; the object: a block in the lower half
    mask[40:72, 8:56] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "figs"
    code = main(["figures", str(a), "--mask", str(tmp_path / "mask.png"), "--synthetic", "1", "--model", "test_vit",
                 "--weights", str(weights), "--image-size", "64", "--svg", "--betas", "0.2", "0.5",
                 "--patches", "5", "10", "--out", str(out)])
    assert code == 0
    index = json.loads((out / "figures.json").read_text())
    names = set(index["synthetic_000"])
    assert names == {"fig2_pair_attention", "fig3_layer_attention", "fig3_head_uncertainty", "fig3_uncertainty_rows",
                     "fig4_global_vs_window", "fig5_indiscriminative", "fig6_dip_betas", "fig7_responsive_field",
                     "fig7_tendency_flow", "fig12_field_size"}
    assert set(index["a"]) == names
    for name in names:
        assert (out / "synthetic_000" / f"{name}.png").stat().st_size > 1000
        assert (out / "synthetic_000" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    assert index["dataset"] == {"fig2_pair_attention_dataset": "fig2_pair_attention_dataset.png"}
    assert (out / "fig2_pair_attention_dataset.png").is_file()
    assert main(["figures", "--model", "test_vit", "--weights", str(weights), "--out", str(out)]) == 2
    assert main(["figures", str(a), "--mask", str(tmp_path / "none.png"), "--model", "test_vit", "--weights",
                 str(weights), "--image-size", "64", "--out", str(out)]) == 2
    assert main(["figures", "--synthetic", "1", "--patches", "16", "--model", "test_vit", "--weights", str(weights),
                 "--image-size", "64", "--out", str(out)]) == 2  # a 4x4 grid has patches 0..15


def test_mask_follows_the_photo_crop(tmp_path):
    from patchfield.figures.paper import _read_mask
    from patchfield.preprocess import Preprocess

    mask = np.zeros((60, 100), dtype=np.uint8)  # landscape: resized to 48/0.875 high, centre-cropped to 48
    mask[:, 50:] = 255  # right half
    Image.fromarray(mask).save(tmp_path / "m.png")
    pre = Preprocess((48, 48), (0, 0, 0), (1, 1, 1), crop_pct=0.875)
    got = _read_mask(tmp_path / "m.png", pre).numpy()
    _, crop = pre(Image.fromarray(np.repeat(mask[..., None], 3, -1)))
    assert got.shape == (48, 48) and got.dtype == bool
    inner = (slice(None), np.r_[0:22, 26:48])  # away from the edge, where bicubic and nearest agree
    np.testing.assert_array_equal(got[inner], crop[..., 0][inner] > 127)
    assert got[:, :22].sum() == 0 and got[:, 26:].all()
    with pytest.raises(FileNotFoundError, match="mask file"):
        _read_mask(tmp_path / "none.png", pre)
    # a palette mask is read by its index, as the data sets read it: palette entry 0 (background) is white here
    pal = Image.fromarray((mask > 0).astype(np.uint8), mode="P")
    pal.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(_read_mask(tmp_path / "p.png", pre).numpy(), got)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="bad.png is not a readable image"):
        _read_mask(tmp_path / "bad.png", pre)


def test_pair_attention_dataset_streams_the_same_statistic():
    import timm

    from patchfield.data import SyntheticShapes

    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, num_classes=3).eval()
    ds = SyntheticShapes(5, image_size=64)
    inner, outer, layers = F.pair_attention_dataset(model, ds, [4, 0, 2], batch_size=2)
    x, _ = ds.batch([4, 0, 2])
    maps = pf.capture_attention(model, x)
    masks = F.patch_mask(torch.stack([ds.object_mask(i) for i in (4, 0, 2)]), maps.grid)
    ref_inner, ref_outer = F.pair_attention(maps, masks)
    assert layers == maps.layers
    torch.testing.assert_close(inner, ref_inner, equal_nan=True)
    torch.testing.assert_close(outer, ref_outer, equal_nan=True)
    with pytest.raises(ValueError, match="object masks"):
        F.pair_attention_dataset(model, [(x[0], 0)])


def test_figures_cli_fig13_with_a_winft_model(weights, tmp_path):
    """Fig. 13 end to end when patchfield.models (WinfT) is present: WinfT applied to a plain ViT's weights."""
    pytest.importorskip("patchfield.models")
    out = tmp_path / "figs"
    code = main(["figures", "--synthetic", "1", "--model", "test_vit", "--weights", str(weights), "--image-size",
                 "64", "--only", "fig13", "fig4", "--winft-model", "test_vit", "--winft-weights", str(weights),
                 "--out", str(out)])
    assert code == 0
    index = json.loads((out / "figures.json").read_text())
    assert index == {"synthetic_000": {"fig13_winft_windows": "fig13_winft_windows.png",
                                       "fig4_global_vs_window": "fig4_global_vs_window.png"}}
    assert sorted(p.name for p in (out / "synthetic_000").iterdir()) == ["fig13_winft_windows.png",
                                                                          "fig4_global_vs_window.png"]
