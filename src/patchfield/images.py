"""Reading image files for a model (the preprocessing itself is :mod:`patchfield.preprocess`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .preprocess import Preprocess

__all__ = ["ImageBatch", "ImageReadError", "read_batches", "read_image"]


class ImageReadError(ValueError):
    """An image file that cannot be read (missing, corrupt or not an image)."""


def read_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB, raising :class:`ImageReadError` with the file's name on failure."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise ImageReadError(f"{path}: no such file") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from e


@dataclass
class ImageBatch:
    """One batch of :func:`read_batches`.

    Attributes:
        images: normalised ``[B, 3, H, W]`` of the readable files (``None`` when none was).
        crops: the ``uint8`` crops ``[H, W, 3]`` drawn on, one per readable file.
        items: the jobs of the readable files, in order.
        failed: ``(job, error)`` of the files that could not be read.
    """

    images: torch.Tensor | None
    crops: list[np.ndarray] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    failed: list[tuple[Any, ImageReadError]] = field(default_factory=list)


def read_batches(jobs: Sequence[Any], preprocess: Preprocess, batch_size: int,
                 path_of=lambda job: job[0]) -> Iterator[ImageBatch]:
    """Read and preprocess image files in batches of ``batch_size`` jobs; an unreadable file is reported in
    :attr:`ImageBatch.failed` and the others go on.

    ``jobs`` are anything that names a file (by default a ``(path, ...)`` tuple; ``path_of`` picks the path).
    """
    for start in range(0, len(jobs), batch_size):
        batch = ImageBatch(None)
        tensors = []
        for job in jobs[start:start + batch_size]:
            try:
                x, crop = preprocess(read_image(path_of(job)))
            except ImageReadError as e:
                batch.failed.append((job, e))
                continue
            tensors.append(x)
            batch.crops.append(crop)
            batch.items.append(job)
        batch.images = torch.stack(tensors) if tensors else None
        yield batch
