"""Reading images for a model: resize, centre-crop, normalise with the model's own statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

__all__ = ["ImageReadError", "model_input_spec", "read_image", "to_model_input"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageReadError(ValueError):
    """An image file that cannot be read (missing, corrupt or not an image)."""


def model_input_spec(model: nn.Module) -> dict:
    """``{"size": (H, W), "mean": ..., "std": ...}`` the model expects."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if hasattr(model, "patch_embed") and getattr(model.patch_embed, "img_size", None):
        size = tuple(model.patch_embed.img_size)
        return {"size": size, "mean": tuple(cfg.get("mean", IMAGENET_MEAN)), "std": tuple(cfg.get("std", IMAGENET_STD))}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "image_size"):
        s = config.image_size
        size = (s, s) if isinstance(s, int) else tuple(s)
        return {"size": size, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    return {"size": (224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD}


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
