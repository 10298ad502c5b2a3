"""Reading images for a model: resize, centre-crop, normalise with the model's own statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .introspect import IMAGENET_MEAN, IMAGENET_STD
from .introspect import input_spec as model_input_spec  # the one input spec; this name kept for callers

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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from e


def to_model_input(
    image: Image.Image, size: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> tuple[torch.Tensor, np.ndarray]:
    """Resize the short side and centre-crop to ``size``; return the normalised ``[C, H, W]``
    tensor and the cropped ``uint8`` RGB array ``[H, W, 3]`` for drawing."""
    h, w = size
    scale = max(h / image.height, w / image.width)
    resized = image.resize((max(w, round(image.width * scale)), max(h, round(image.height * scale))),
                           Image.BICUBIC)
    left, top = (resized.width - w) // 2, (resized.height - h) // 2
    crop = np.asarray(resized.crop((left, top, left + w, top + h)), dtype=np.uint8)
    x = torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255.0
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    return x, crop
