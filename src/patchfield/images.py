"""Reading image files for a model (the preprocessing itself is :mod:`patchfield.preprocess`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .introspect import IMAGENET_MEAN, IMAGENET_STD
from .introspect import input_spec as model_input_spec  # the one input spec; this name kept for callers
from .preprocess import Preprocess

__all__ = ["ImageReadError", "model_input_spec", "read_image", "to_model_input"]


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


def to_model_input(
    image: Image.Image, size: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct: float = 1.0,
    interpolation: str = "bicubic",
) -> tuple[torch.Tensor, np.ndarray]:
    """``Preprocess(size, mean, std, crop_pct, interpolation=...)(image)``: the normalised ``[C, H, W]``
    tensor and the cropped ``uint8`` RGB array ``[H, W, 3]``. Commands use the model's own rule,
    ``Preprocess.for_model(model)(image)`` (:mod:`patchfield.preprocess`)."""
    return Preprocess(size, mean, std, crop_pct, interpolation=interpolation)(image)
