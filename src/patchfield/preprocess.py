"""The preprocessing rule: how a photo (and its object mask) becomes a model input. The only copy in patchfield.

Evaluation: resize the short side to ``size / crop_pct`` with the model's interpolation, centre-crop
``size``, normalise with the model's mean and std. The model's values come from its own data config
(:meth:`Preprocess.for_model`; timm's ``resolve_data_config`` semantics). Object masks go through the
same geometry with nearest-neighbour resampling (:meth:`Preprocess.mask`). Training
(``augment=True``): random-resized crop (scale 0.08-1, ratio 3/4-4/3) and horizontal flip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .introspect import input_spec

__all__ = ["DEFAULT_CROP_PCT", "INTERPOLATIONS", "Preprocess", "as_size", "model_data_config"]

DEFAULT_CROP_PCT = 0.875
#: PIL resampling filter of each timm interpolation name.
INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                  "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


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


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """``{"size", "mean", "std", "crop_pct", "interpolation"}`` the model expects.

    The one introspection is :func:`patchfield.introspect.input_spec`.
    """
    return input_spec(model)


class Preprocess:
    """Geometry plus normalisation: the preprocessing rule (module docstring).

    Args:
        size: output ``(H, W)``.
        mean, std: per-channel normalisation.
        crop_pct: evaluation centre-crop fraction (``1.0``: resize the short side to the size itself).
        augment: random-resized crop and horizontal flip instead of the centre crop.
        interpolation: resampling of the image (``bicubic``, ``bilinear``, ...; masks always ``nearest``).
    """

    def __init__(self, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                 crop_pct: float = DEFAULT_CROP_PCT, augment: bool = False, interpolation: str = "bicubic") -> None:
        if not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0); got {mean}, {std}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")
        self.size = as_size(size)
        self.mean = torch.tensor([float(m) for m in mean])[:, None, None]
        self.std = torch.tensor([float(s) for s in std])[:, None, None]
        self.crop_pct = float(crop_pct)
        self.augment = bool(augment)
        self.interpolation = interpolation

    @classmethod
    def for_model(cls, model: nn.Module, size: int | Sequence[int] | None = None, augment: bool = False) -> Preprocess:
        """The model's own preprocessing: its input size (or ``size``), mean, std, crop ratio, interpolation."""
        spec = model_data_config(model)
        return cls(spec["size"] if size is None else size, spec["mean"], spec["std"], spec["crop_pct"], augment,
                   spec["interpolation"])

    def data_kwargs(self) -> dict[str, Any]:
        """``mean``, ``std``, ``crop_pct``, ``interpolation`` as :func:`patchfield.data.build_dataset` takes them."""
        return {"mean": tuple(self.mean.flatten().tolist()), "std": tuple(self.std.flatten().tolist()),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation}

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
        """``image``'s ``box`` resampled to the output size (and flipped)."""
        h, w = self.size
        out = image.resize((w, h), resample=resample, box=box)
        return out.transpose(Image.FLIP_LEFT_RIGHT) if flip else out

    def normalise(self, crop: np.ndarray) -> torch.Tensor:
        """A ``uint8`` crop ``[H, W, 3]`` as the normalised ``[3, H, W]`` float tensor."""
        x = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
        return (x - self.mean) / self.std

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Normalised ``[3, H, W]`` tensor and the ``uint8`` crop ``[H, W, 3]``."""
        box, flip = self.box(image.width, image.height, generator)
        crop = np.asarray(self.geometry(image.convert("RGB"), box, flip, INTERPOLATIONS[self.interpolation]),
                          dtype=np.uint8)
        return self.normalise(crop), crop

    def mask(self, mask: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
        """An object mask (nonzero = object; an image or an ``[h, w]`` array) through the evaluation geometry.

        Returns bool ``[H, W]``, pixel-aligned with the crop of a photo of the mask's size.
        """
        if not isinstance(mask, Image.Image):
            a = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            if a.ndim != 2:
                raise ValueError(f"a mask must be [H, W]; got shape {a.shape}")
            mask = Image.fromarray((a != 0).astype(np.uint8) * 255)
        box, _ = Preprocess(self.size, (0, 0, 0), (1, 1, 1), self.crop_pct).box(mask.width, mask.height)
        out = self.geometry(mask.convert("L"), box, False, Image.NEAREST)
        return torch.from_numpy(np.asarray(out) > 0)
