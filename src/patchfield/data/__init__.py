"""Data sets: the embedded synthetic shapes, generated radial contours (the pretraining source), folder layouts
(ImageFolder, CUB-200-2011), small real sets.

Every data set returns ``(image [3, H, W] normalised, label)`` and has ``num_classes``, ``classes``,
``name``, ``fingerprint()`` and ``raw_image(i)``; those with object masks (``has_masks``) have
``object_mask(i)``. Data sets of ``(image, object mask)`` pairs (``build_mask_dataset``: ``synthetic``,
``cub``, ``coco``, ``masks``) follow the small protocol of :mod:`patchfield.data.masks`. File-backed
sets may return ``None`` for an image that fails to decode: load them with ``collate_fn=collate_skip``
(see :mod:`patchfield.data.folder`). Photos and their masks go
through :class:`patchfield.preprocess.Preprocess` (the preprocessing rule).
"""

from .coco import CocoMasks
from .folder import IMAGE_EXTENSIONS, CUBDataset, ImageFolderDataset
from .formula import FormulaContours
from .masks import MaskFolder, WithMasks
from .registry import DATASET_NAMES, MASK_DATASET_NAMES, build_dataset, build_mask_dataset, collate_skip
from .small import FashionMNIST, MNIST5k, read_idx, read_mnist_csv
from .synthetic import SHAPE_CLASSES, SyntheticShapes

__all__ = [
    "CUBDataset",
    "CocoMasks",
    "DATASET_NAMES",
    "FashionMNIST",
    "FormulaContours",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "MASK_DATASET_NAMES",
    "MNIST5k",
    "MaskFolder",
    "SHAPE_CLASSES",
    "SyntheticShapes",
    "WithMasks",
    "build_dataset",
    "build_mask_dataset",
    "collate_skip",
    "read_idx",
    "read_mnist_csv",
]
