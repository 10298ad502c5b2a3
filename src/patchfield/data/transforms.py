"""ImageNet-style preprocessing shared by the file-backed data sets.

Evaluation: resize the short side to ``size / crop_pct`` (bicubic), centre-crop ``size``.
Training (``augment=True``): random-resized crop (scale 0.08-1, ratio 3/4-4/3) and horizontal flip.
Object masks go through the same geometry with nearest-neighbour resampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["DEFAULT_CROP_PCT", "Preprocess", "as_size"]

DEFAULT_CROP_PCT = 0.875


def as_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` from an int or a pair; raises ``ValueError`` on non-positive sizes."""
    if isinstance(size, int):
        h = w = size
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"image_size must be an int or an (H, W) pair, got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {size!r}")
    return h, w


class Preprocess:
    """Geometry plus normalisation for one data set.

    Args:
        size: output ``(H, W)``.
        mean, std: per-channel normalisation.
        crop_pct: evaluation centre-crop fraction (``1.0``: resize the short side to the size itself).
        augment: random-resized crop and horizontal flip instead of the centre crop.
    """

    def __init__(self, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                 crop_pct: float = DEFAULT_CROP_PCT, augment: bool = False) -> None:
        if not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0); got {mean}, {std}")
        self.size = as_size(size)
        self.mean = torch.tensor([float(m) for m in mean])[:, None, None]
        self.std = torch.tensor([float(s) for s in std])[:, None, None]
        self.crop_pct = float(crop_pct)
        self.augment = bool(augment)

    def box(self, width: int, height: int, generator: torch.Generator | None = None) -> tuple[tuple, bool]:
        """The crop box ``(left, top, right, bottom)`` in source pixels and whether to flip."""
        h, w = self.size
        if self.augment:
            area = width * height
            for _ in range(10):
                target = area * float(torch.empty(1).uniform_(0.08, 1.0, generator=generator))
                log_r = torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
                ratio = math.exp(float(log_r))
                cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
                if 0 < cw <= width and 0 < ch <= height:
                    left = int(torch.randint(0, width - cw + 1, (1,), generator=generator))
                    top = int(torch.randint(0, height - ch + 1, (1,), generator=generator))
                    flip = bool(torch.rand(1, generator=generator) < 0.5)
                    return (left, top, left + cw, top + ch), flip
            # fall back to the centre crop (as torchvision does)
        scale = max(h / height, w / width) / self.crop_pct
        cw, ch = w / scale, h / scale
        left, top = (width - cw) / 2, (height - ch) / 2
        return (left, top, left + cw, top + ch), False

    def geometry(self, image: Image.Image, box: tuple, flip: bool, resample: int) -> Image.Image:
        h, w = self.size
        out = image.resize((w, h), resample=resample, box=box)
        return out.transpose(Image.FLIP_LEFT_RIGHT) if flip else out

    def normalise(self, crop: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
        return (x - self.mean) / self.std

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Normalised ``[3, H, W]`` tensor and the ``uint8`` crop ``[H, W, 3]``."""
        box, flip = self.box(image.width, image.height, generator)
        crop = np.asarray(self.geometry(image.convert("RGB"), box, flip, Image.BICUBIC), dtype=np.uint8)
        return self.normalise(crop), crop

    def mask(self, mask: Image.Image) -> torch.Tensor:
        """An object mask (``L`` image, nonzero = object) through the evaluation geometry, bool ``[H, W]``."""
        box, flip = Preprocess(self.size, (0, 0, 0), (1, 1, 1), self.crop_pct).box(mask.width, mask.height)
        out = self.geometry(mask, box, flip, Image.NEAREST)
        return torch.from_numpy(np.asarray(out) > 0)
