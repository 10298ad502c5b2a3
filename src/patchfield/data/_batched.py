"""A data set whose items come from one batched ``batch(indices)``: the rendered and in-memory sets."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["BatchedDataset", "GeneratedDataset"]


class BatchedDataset(Dataset):
    """Items ``(image, label)`` from :meth:`batch`; ``DataLoader`` fetches whole batches through
    ``__getitems__``, so rendering or resizing runs once per batch, vectorised."""

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images ``[B, 3, H, W]`` and labels ``[B]`` of ``indices``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch([index])
        return x[0], int(y[0])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        x, y = self.batch(indices)
        return [(x[j], int(y[j])) for j in range(len(y))]


class GeneratedDataset(BatchedDataset):
    """A rendered data set of ``num_images`` images whose label is the index modulo ``num_classes``."""

    num_images: int
    num_classes: int

    def _settings(self, name: str, num_images: int, image_size: int, num_classes: int, seed: int, split: str,
                  mean: Sequence[float], std: Sequence[float]) -> None:
        """Check and keep the settings every rendered set has (each set checks its own size and class ranges)."""
        if int(num_images) < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0); got {mean}, {std}")
        self.name = name
        self.num_images = int(num_images)
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.split = str(split)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._split_code = zlib.crc32(self.split.encode())

    def __len__(self) -> int:
        return self.num_images

    def label(self, index: int) -> int:
        return int(index) % self.num_classes

    @property
    def targets(self) -> list[int]:
        return [i % self.num_classes for i in range(self.num_images)]

    def _check(self, indices: Sequence[int]) -> np.ndarray:
        """``indices`` as an int64 array in ``[0, num_images)`` (negative ones count from the end)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self.num_images or idx.max() >= self.num_images):
            raise IndexError(f"index out of range for {type(self).__name__} of length {self.num_images}")
        return idx % max(self.num_images, 1)
