"""File-backed data sets: ImageFolder (the ImageNet layout) and CUB-200-2011's own layout.

Unreadable images are never skipped silently. Two stages catch them:

1. At construction (``validate=True``, the default) every file's header is read; files that are
   missing, empty or not images are dropped from the index, listed in :attr:`skipped`
   (``(relative path, reason)``) and named in one ``WARNING`` on the ``patchfield.data`` logger.
   Indices, lengths and :meth:`fingerprint` refer to the validated list.
2. An image whose header is fine but whose pixel data fails to decode (truncated file) makes
   ``dataset[i]`` return ``None``; the failure is logged by name and counted in
   :attr:`load_failures` (per process). :func:`patchfield.data.collate_skip` drops these
   ``None`` samples from a batch, so use it as the ``DataLoader``'s ``collate_fn``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm import tqdm

from ..introspect import IMAGENET_MEAN, IMAGENET_STD
from ..preprocess import DEFAULT_CROP_PCT, Preprocess

__all__ = ["CUBDataset", "ImageFolderDataset", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def _header_problem(path: Path) -> str | None:
    """``None`` when ``path`` opens as an image (header only), else the reason it does not."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as im:
            im.size  # noqa: B018 - parsing the header is the check
        return None
    except FileNotFoundError:
        return "no such file"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"not a readable image ({e})"


class _FileDataset(Dataset):
    """Shared machinery: a list of ``(relative path, label)`` under ``root``, preprocessing, failures."""

    name = "files"
    has_masks = False

    def __init__(self, root: str | Path, samples: list[tuple[str, int]], classes: list[str],
                 image_size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                 crop_pct: float, augment: bool, validate: bool, interpolation: str = "bicubic") -> None:
        self.root = Path(root)
        self.classes = classes
        self.num_classes = len(classes)
        self.preprocess = Preprocess(image_size, mean, std, crop_pct, augment, interpolation)
        self.image_size = self.preprocess.size
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.skipped: list[tuple[str, str]] = []
        self.load_failures = 0
        if validate:
            kept = []
            it = tqdm(samples, desc=f"checking {self.name} images", unit="img", disable=len(samples) < 5000)
            for rel, label in it:
                problem = _header_problem(self.root / rel)
                if problem is None:
                    kept.append((rel, label))
                else:
                    self.skipped.append((rel, problem))
            samples = kept
        if self.skipped:
            names = "; ".join(f"{rel}: {why}" for rel, why in self.skipped)
            log.warning("%s under %s: skipped %d unreadable image(s) of %d: %s", self.name, self.root,
                        len(self.skipped), len(samples) + len(self.skipped), names)
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def fingerprint(self) -> str:
        """A short hash of the validated file list, labels and preprocessing (not of ``root``)."""
        interp = "" if self.preprocess.interpolation == "bicubic" else f"|{self.preprocess.interpolation}"
        h = hashlib.sha256(f"{self.name}|{self.image_size}|{self.preprocess.crop_pct}|{self.mean}|{self.std}{interp}"
                           .encode())
        for rel, label in self.samples:
            h.update(f"\n{rel}\t{label}".encode())
        return h.hexdigest()[:16]

    def path(self, index: int) -> Path:
        return self.root / self.samples[index][0]

    def _open(self, index: int) -> Image.Image | None:
        rel = self.samples[index][0]
        try:
            with Image.open(self.root / rel) as im:
                im.load()
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            self.load_failures += 1
            log.warning("%s: skipped unreadable image %s (%s)", self.name, self.root / rel, e)
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        """``(image [3, H, W], label)``, or ``None`` when the file fails to decode (see module doc)."""
        image = self._open(index)
        if image is None:
            return None
        x, _ = self.preprocess(image)
        return x, self.samples[index][1]

    def raw_image(self, index: int) -> np.ndarray:
        """The ``uint8`` crop ``[H, W, 3]`` the model sees (evaluation geometry).

        Raises:
            ValueError: the file cannot be decoded.
        """
        image = self._open(index)
        if image is None:
            raise ValueError(f"{self.path(index)} is not a readable image")
        p = self.preprocess
        return Preprocess(self.image_size, self.mean, self.std, p.crop_pct, interpolation=p.interpolation)(image)[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, len={len(self)}, classes={self.num_classes})"


class ImageFolderDataset(_FileDataset):
    """``root/<class name>/<image>``: classes are the sorted subfolder names (the ImageNet layout).

    Args:
        root: folder with one subfolder per class.
        image_size: output size ``S`` or ``(H, W)``.
        mean, std: the model's normalisation.
        crop_pct: evaluation centre-crop fraction (short side resized to ``S / crop_pct``).
        interpolation: resampling of the photos (``bicubic``, ``bilinear``, ...; :mod:`patchfield.preprocess`).
        augment: random-resized crop and flip (training); default off.
        validate: check every file's header at construction (see the module doc).
    """

    name = "imagefolder"

    def __init__(self, root: str | Path, image_size: int | Sequence[int] = 224,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 crop_pct: float = DEFAULT_CROP_PCT, augment: bool = False, validate: bool = True,
                 interpolation: str = "bicubic") -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"ImageFolder root {root} is not a folder (expected root/<class>/<image>)")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise ValueError(f"{root} has no class subfolders (expected root/<class>/<image>)")
        samples = [
            (f.relative_to(root).as_posix(), label)
            for label, c in enumerate(classes)
            for f in sorted((root / c).rglob("*"))
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not samples:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}/<class>/")
        super().__init__(root, samples, classes, image_size, mean, std, crop_pct, augment, validate, interpolation)


def _read_table(path: Path, columns: int) -> dict[int, list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"CUB-200-2011 file {path} is missing; pass the folder holding images.txt as root")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < columns:
            raise ValueError(f"{path}:{n}: expected {columns} columns, got {line!r}")
        out[int(parts[0])] = parts[1:]
    return out


class CUBDataset(_FileDataset):
    """CUB-200-2011 in its own layout, with object masks.

    ``root`` holds ``images.txt``, ``train_test_split.txt``, ``image_class_labels.txt``,
    ``classes.txt`` (optional), ``bounding_boxes.txt`` and ``images/``. The object mask of an image
    is its segmentation (``segmentations/<path>.png`` under ``root`` or its parent, from the separate
    CUB segmentation download; pixels ``>= 128`` = object, the annotators' majority) where present,
    else its bounding box.

    Args:
        root: the ``CUB_200_2011`` folder (or its parent).
        split: ``"train"`` or ``"test"`` (``"val"`` is read as ``"test"``).
        image_size, mean, std, crop_pct, augment, validate, interpolation: as :class:`ImageFolderDataset`.
    """

    name = "cub"
    has_masks = True

    def __init__(self, root: str | Path, split: str = "train", image_size: int | Sequence[int] = 448,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 crop_pct: float = DEFAULT_CROP_PCT, augment: bool = False, validate: bool = True,
                 interpolation: str = "bicubic") -> None:
        root = Path(root)
        if split not in ("train", "test", "val"):
            raise ValueError(f"CUB split must be 'train' or 'test' (or 'val' = test), got {split!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"CUB-200-2011 root {root} is not a folder")
        if not (root / "images.txt").is_file() and (root / "CUB_200_2011" / "images.txt").is_file():
            root = root / "CUB_200_2011"  # the archive's parent folder was given
        self.split = split
        images = _read_table(root / "images.txt", 2)
        is_train = _read_table(root / "train_test_split.txt", 2)
        labels = _read_table(root / "image_class_labels.txt", 2)
        boxes = _read_table(root / "bounding_boxes.txt", 5) if (root / "bounding_boxes.txt").is_file() else {}
        if (root / "classes.txt").is_file():
            names = _read_table(root / "classes.txt", 2)
            classes = [names[k][0] for k in sorted(names)]
        else:
            classes = [str(k) for k in sorted({int(v[0]) for v in labels.values()})]
        want = 1 if split == "train" else 0
        samples, self._ids = [], {}
        for image_id in sorted(images):
            if image_id not in is_train or image_id not in labels:
                raise ValueError(f"CUB image id {image_id} lacks a split or a label in {root}")
            if int(is_train[image_id][0]) != want:
                continue
            rel = f"images/{images[image_id][0]}"
            samples.append((rel, int(labels[image_id][0]) - 1))
            self._ids[rel] = image_id
        self._boxes = {k: tuple(float(x) for x in v[:4]) for k, v in boxes.items()}
        seg = [d for d in (root / "segmentations", root.parent / "segmentations") if d.is_dir()]
        self._seg_root = seg[0] if seg else None
        super().__init__(root, samples, classes, image_size, mean, std, crop_pct, augment, validate, interpolation)

    def image_id(self, index: int) -> int:
        """CUB's own 1-based image id."""
        return self._ids[self.samples[index][0]]

    def segmentation_path(self, index: int) -> Path | None:
        if self._seg_root is None:
            return None
        rel = Path(self.samples[index][0]).relative_to("images").with_suffix(".png")
        path = self._seg_root / rel
        return path if path.is_file() else None

    def bounding_box(self, index: int) -> tuple[float, float, float, float] | None:
        """``(x, y, width, height)`` in source pixels, or ``None``."""
        return self._boxes.get(self.image_id(index))

    def object_mask(self, index: int) -> torch.Tensor:
        """Bool ``[H, W]`` in the evaluation geometry: the segmentation where present, else the bounding box.

        Raises:
            ValueError: the image has neither, or its file cannot be read.
        """
        seg = self.segmentation_path(index)
        if seg is not None:
            with Image.open(seg) as im:
                m = np.asarray(im.convert("L")) >= 128
            return self.preprocess.mask(Image.fromarray((m * 255).astype(np.uint8)))
        box = self.bounding_box(index)
        if box is None:
            raise ValueError(f"{self.path(index)} has no segmentation and no bounding box")
        with Image.open(self.path(index)) as im:
            width, height = im.size
        x, y, w, h = box
        ys, xs = np.mgrid[0:height, 0:width]
        m = (xs + 0.5 >= x) & (xs + 0.5 <= x + w) & (ys + 0.5 >= y) & (ys + 0.5 <= y + h)
        return self.preprocess.mask(Image.fromarray((m * 255).astype(np.uint8)))
