"""Odd photos: one reader for every command, and one image never ends a run.

A folder of odd files goes through ``analyze``, ``claims`` and ``stats`` once each on the shipped demo ViT:
every readable photo is analysed, every bad file is named with its reason, and the exit code is 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchfield.cli import main
from patchfield.images import ImageReadError, read_photo, to_rgb

DEMO_VIT = str(Path(__file__).resolve().parents[1] / "src" / "patchfield" / "assets" / "demo" / "vit")
MAX_PIXELS = 10_000  # Pillow's bomb limit in these tests, so a "bomb" stays small


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _make_corpus(root: Path) -> tuple[list[str], dict[str, str]]:
    """Write the odd files; ``(readable names, {bad name: expected words of its reason})``."""
    root.mkdir(parents=True)
    Image.fromarray(_rgb(48, 64)).save(root / "plain.jpg", quality=90)
    Image.fromarray(_rgb(40, 56, 1)).save(root / "progressive.jpg", progressive=True, quality=90)
    Image.fromarray(_rgb(50, 50, 2)).save(root / "photo.webp")
    Image.fromarray(_rgb(36, 60, 3)).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray((np.arange(48 * 40).reshape(48, 40) * 30).astype(np.uint16)).save(root / "gray16.png")
    Image.fromarray((np.arange(44 * 44).reshape(44, 44) * 1000).astype(np.int32), mode="I").save(root / "gray32.tif")
    Image.fromarray(np.linspace(0, 1, 40 * 48, dtype=np.float32).reshape(40, 48), mode="F").save(root / "float.tif")
    pal = Image.fromarray(_rgb(40, 40, 4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.info["transparency"] = 0
    pal.save(root / "palette.png", transparency=0)
    la = np.stack([np.full((40, 52), 90, np.uint8), np.tile(np.linspace(0, 255, 52).astype(np.uint8), (40, 1))], -1)
    Image.fromarray(la, mode="LA").save(root / "gray_alpha.png")
    Image.fromarray(_rgb(1, 1, 5)).save(root / "one_pixel.png")
    Image.fromarray(_rgb(3, 2, 6)).save(root / "under_a_patch.png")  # the demo ViT's patches are 4x4
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.fromarray(_rgb(30, 60, 7)).save(root / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(_rgb(99, 99, 8)).save(root / "square.png")
    good = sorted(p.name for p in root.iterdir())
    data = (root / "plain.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image\n")
    Image.fromarray(_rgb(150, 150, 9)).save(root / "bomb.png")  # 22500 px > 2 x the limit: Pillow's error
    Image.fromarray(_rgb(110, 100, 10)).save(root / "bomb_warning.png")  # 11000 px: Pillow's warning
    bad = {"truncated.jpg": "truncated", "empty.jpg": "empty", "text.jpg": "not an image",
           "bomb.png": "decompression bomb", "bomb_warning.png": "decompression bomb"}
    return good, bad


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", MAX_PIXELS)
    good, bad = _make_corpus(tmp_path / "photos")
    return tmp_path / "photos", good, bad


def test_the_reader_on_odd_modes(corpus):
    root, good, bad = corpus
    for name in good:
        photo = read_photo(root / name)
        assert photo.image.mode == "RGB", name
    g16 = np.asarray(read_photo(root / "gray16.png").image)[..., 0]  # v * 255 / 65535, not clipped to 255
    raw16 = np.asarray(Image.open(root / "gray16.png")).astype(np.float64)
    np.testing.assert_array_equal(g16, np.rint(raw16 * 255 / 65535).astype(np.uint8))
    assert g16.max() == 224 and (g16 == 255).mean() == 0  # convert("RGB") would give 99% 255
    f = np.asarray(read_photo(root / "float.tif").image)[..., 0]  # [0, 1] floats -> 0..255, not all 0
    np.testing.assert_array_equal(f, np.rint(np.linspace(0, 1, 40 * 48).reshape(40, 48) * 255).astype(np.uint8))
    g32 = np.asarray(read_photo(root / "gray32.tif").image)[..., 0]  # past 65535: by the int32 range
    v = (np.arange(44 * 44).reshape(44, 44) * 1000).astype(np.float64)
    np.testing.assert_array_equal(g32, np.rint((v + 2.0 ** 31) * 255 / (2.0 ** 32 - 1)).astype(np.uint8))
    i16 = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32), mode="I")  # 16-bit data kept in I
    np.testing.assert_array_equal(np.asarray(to_rgb(i16))[0, :, 0], [0, 128, 255])
    la = np.asarray(read_photo(root / "gray_alpha.png").image)  # alpha over white: transparent -> white
    assert tuple(la[0, 0]) == (255, 255, 255) and tuple(la[0, -1]) == (90, 90, 90)
    pal = read_photo(root / "palette.png")
    transparent = np.asarray(Image.open(root / "palette.png")) == 0
    assert (np.asarray(pal.image)[transparent] == 255).all()
    rotated = read_photo(root / "rotated.jpg")
    assert rotated.orientation == 6 and rotated.stored.size == (60, 30) and rotated.image.size == (30, 60)
    for name, words in bad.items():
        with pytest.raises(ImageReadError, match=words) as e:
            read_photo(root / name)
        assert str(root / name) in str(e.value)
    with pytest.raises(ImageReadError, match="no such file"):
        read_photo(root / "absent.png")


def test_an_exif_rotated_photo_and_its_mask_stay_aligned(tmp_path):
    from patchfield.data.masks import MaskFolder

    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    block = np.zeros((30, 60), dtype=bool)  # the stored grid: landscape
    block[5:20, 10:45] = True
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.where(block[..., None], 255, 0).astype(np.uint8).repeat(3, 2)).save(
        tmp_path / "img" / "a.png", exif=exif.tobytes())
    Image.fromarray(block.astype(np.uint8) * 255).save(tmp_path / "mask" / "a.png")
    ds = MaskFolder(tmp_path / "img", tmp_path / "mask", 24, (0, 0, 0), (1, 1, 1), crop_pct=1.0)
    x, m = ds[0]
    bright = x[0].numpy()
    sharp = (bright < 0.1) | (bright > 0.9)
    assert sharp.mean() > 0.7 and m.numpy()[sharp].any()
    np.testing.assert_array_equal(m.numpy()[sharp], bright[sharp] > 0.5)


def _skipped_names(entries) -> set[str]:
    return {Path(e["image"]).name for e in entries}


def test_analyze_claims_and_stats_skip_bad_files_by_name_and_exit_1(corpus, tmp_path):
    root, good, bad = corpus
    files = [str(p) for p in sorted(root.iterdir())]
    model = ["--model", DEMO_VIT]

    out = tmp_path / "analyze"
    assert main(["analyze", *files, *model, "--no-figures", "--out", str(out)]) == 1
    summary = json.loads((out / "analyze.json").read_text())
    assert sorted(Path(e["image"]).name for e in summary["images"]) == good
    assert _skipped_names(summary["skipped"]) == set(bad)
    for entry in summary["skipped"]:
        assert bad[Path(entry["image"]).name].split()[0] in entry["reason"]
    for name in good:
        assert json.loads((out / Path(name).stem / "fields.json").read_text())["image"] == str(root / name)

    out = tmp_path / "stats"
    assert main(["stats", *files, *model, "--no-figures", "--out", str(out)]) == 1
    stats = json.loads((out / "stats.json").read_text())
    assert _skipped_names(stats["skipped"]) == set(bad)
    assert sorted(Path(r["image"]).name for r in stats["models"][0]["per_image"]) == good

    masks = tmp_path / "masks"
    masks.mkdir()
    for p in root.iterdir():  # a mask for every file, good or bad: an object in the middle
        m = np.zeros((40, 40), np.uint8)
        m[10:30, 12:28] = 255
        Image.fromarray(m).save(masks / f"{p.stem}.png")
    for name in good:  # masks have their image's (stored) size
        with Image.open(root / name) as im:
            w, h = im.size
        m = np.zeros((h, w), np.uint8)
        m[h // 4: 3 * h // 4 + 1, w // 4: 3 * w // 4 + 1] = 255
        Image.fromarray(m).save(masks / f"{Path(name).stem}.png")
    out = tmp_path / "claims"
    assert main(["claims", *model, "--data", "masks", "--data-root", str(root), "--mask-root", str(masks),
                 "--random-inits", "1", "--no-progress", "--out", str(out)]) == 1
    claims = json.loads((out / "claims.json").read_text())
    assert _skipped_names(claims["skipped_images"]) == set(bad)
    assert claims["skipped"]["unreadable"] == len(bad)
    assert claims["images"] + claims["skipped"]["degenerate_mask"] == len(good)


def test_figures_faithfulness_and_groundtruth_skip_bad_files_by_name_and_exit_1(corpus, tmp_path):
    root, good, bad = corpus
    model = ["--model", DEMO_VIT]
    files = [str(root / n) for n in sorted([*good[:3], *bad])]

    out = tmp_path / "figures"
    assert main(["figures", *files, *model, "--only", "fields", "--out", str(out)]) == 1
    assert _skipped_names(json.loads((out / "figures.json").read_text())["skipped"]) == set(bad)

    out = tmp_path / "faithfulness"
    assert main(["faithfulness", *files, *model, "--methods", "random", "--steps", "2", "--out", str(out)]) == 1
    assert _skipped_names(json.loads((out / "faithfulness.json").read_text())["skipped"]) == set(bad)

    folder = tmp_path / "classes"
    (folder / "a").mkdir(parents=True)
    for n in files:
        (folder / "a" / Path(n).name).write_bytes(Path(n).read_bytes())
    out = tmp_path / "gt"
    assert main(["groundtruth", *model, "--data", "imagefolder", "--data-root", str(folder), "--alpha", "0.1",
                 "--beta", "0.2", "--device", "cpu", "--no-progress", "--out", str(out)]) == 1
    skipped = {Path(e["image"]).name: e for e in json.loads((out / "manifest.json").read_text())["skipped"]}
    assert set(skipped) == set(bad)
    assert skipped["truncated.jpg"]["indexed"] and not skipped["empty.jpg"]["indexed"]  # stored invalid / dropped


def test_an_extremely_elongated_photo_is_refused_by_the_preprocessing():
    from conftest import tiny_vit

    from patchfield.preprocess import MAX_RESIZED_PIXELS, Preprocess

    p = Preprocess.for_model(tiny_vit())  # short side to 32 / 0.875 = 36 px
    long = MAX_RESIZED_PIXELS // 36 // 36 + 100
    with pytest.raises(ValueError, match="too elongated"):
        p(Image.new("RGB", (long, 1)))  # 36 x (36 * long) px would pass the limit
    assert p(Image.new("RGB", (1000, 1)))[0].shape == (3, 32, 32)
