"""A data set whose items come from one batched ``batch(indices)``: the rendered and in-memory sets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

__all__ = ["BatchedDataset"]


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
