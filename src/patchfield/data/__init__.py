"""Data sets: the embedded synthetic shapes, folder layouts (ImageFolder, CUB-200-2011), small real sets.

Every data set returns ``(image [3, H, W] normalised, label)`` and has ``num_classes``, ``classes``,
``name``, ``fingerprint()`` and ``raw_image(i)``; those with object masks (``has_masks``) have
``object_mask(i)``. File-backed sets may return ``None`` for an image that fails to decode: load
them with ``collate_fn=collate_skip`` (see :mod:`patchfield.data.folder`). Photos and their masks go
through :class:`Preprocess` (:mod:`patchfield.preprocess`, the preprocessing rule).
"""

from .folder import IMAGE_EXTENSIONS, CUBDataset, ImageFolderDataset
from .registry import DATASET_NAMES, build_dataset, collate_skip
from .small import FashionMNIST, MNIST5k, read_idx, read_mnist_csv
from .synthetic import SHAPE_CLASSES, SyntheticShapes
from .transforms import Preprocess

__all__ = [
    "CUBDataset",
    "DATASET_NAMES",
    "FashionMNIST",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "MNIST5k",
    "Preprocess",
    "SHAPE_CLASSES",
    "SyntheticShapes",
    "build_dataset",
    "collate_skip",
    "read_idx",
    "read_mnist_csv",
]
