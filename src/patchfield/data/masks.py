"""Images with object masks: the small protocol ``patchfield claims`` reads, and a folder of mask PNGs.

The protocol (any object works, e.g. a ``torch.utils.data.Dataset``):

- ``len(ds)`` and ``ds[i]`` giving ``(image, mask)``: ``image`` a normalised float ``[3, H, W]`` tensor as
  the model takes it, ``mask`` a bool ``[H, W]`` tensor (True = object) through the same geometry as the
  image, or ``None`` when the image has no mask; ``ds[i]`` may be ``None`` for an image that fails to
  decode (or raise ``ValueError``/``OSError``: the image is skipped with the error as its reason).
- optional ``ds.skipped``: ``{"missing": int, ...}``, images left out before indexing (counted in reports);
- optional ``ds.image_name(i)``: a name for the per-image table;
- optional ``ds.failures``: ``{index: reason}`` of the images that gave ``None``;
- optional ``ds.dropped``: ``[(image, reason)]`` of files left out before indexing (named in reports).

:class:`WithMasks` adapts patchfield's own data sets that have ``object_mask(i)`` (``synthetic``, ``cub``);
:class:`MaskFolder` reads ``--data-root`` images and ``--mask-root`` PNGs with the same stems; COCO-format
annotations are :class:`patchfield.data.coco.CocoMasks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..images import ImageReadError, read_photo
from ..introspect import IMAGENET_MEAN, IMAGENET_STD
from ..preprocess import DEFAULT_CROP_PCT, Preprocess
from .folder import IMAGE_EXTENSIONS

__all__ = ["MaskFolder", "MaskedFiles", "WithMasks", "mask_array", "read_mask_file"]

_UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


def mask_array(image: Image.Image) -> np.ndarray:
    """A mask image as bool ``[H, W]``: nonzero = object (palette masks by their index, colour masks by grey)."""
    if image.mode not in ("1", "L", "P", "I", "I;16", "F"):
        image = image.convert("L")
    return np.asarray(image) != 0


def read_mask_file(path: str | Path) -> np.ndarray:
    """A mask image file as bool ``[H, W]`` (:func:`mask_array`), in its stored pixel grid.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable image; the message names it.
    """
    try:
        with Image.open(path) as im:
            return mask_array(im)
    except FileNotFoundError:
        raise
    except (*_UNREADABLE, Image.DecompressionBombError) as e:
        raise ValueError(f"mask {path} is not a readable image ({e})") from None


class WithMasks(Dataset):
    """A patchfield data set with ``object_mask(i)`` (``synthetic``, ``cub``) as ``(image, mask)`` pairs.

    An image whose mask cannot be had (``object_mask`` raises ``ValueError``) gives ``mask = None``.
    """

    def __init__(self, dataset: Any) -> None:
        if not hasattr(dataset, "object_mask"):
            raise ValueError(f"{type(dataset).__name__} has no object masks")
        self.dataset = dataset
        self.skipped = {"unreadable": len(getattr(dataset, "skipped", []) or [])}

    @property
    def failures(self) -> dict[int, str]:
        return getattr(self.dataset, "failures", {})

    @property
    def dropped(self) -> list[tuple[str, str]]:
        """``(image, reason)`` of the files left out when the data set was indexed (bad headers)."""
        found = getattr(self.dataset, "skipped", None)
        return list(found) if isinstance(found, list) else []

    def __len__(self) -> int:
        return len(self.dataset)

    def image_name(self, index: int) -> str:
        samples = getattr(self.dataset, "samples", None)
        return str(samples[index][0]) if samples is not None else str(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        item = self.dataset[index]
        if item is None:
            return None
        try:
            mask = torch.as_tensor(self.dataset.object_mask(index), dtype=torch.bool)
        except ValueError:
            mask = None
        return item[0], mask


class MaskedFiles(Dataset):
    """Image files with masks from a subclass's :meth:`raw_mask`, both through one :class:`Preprocess`.

    Args:
        root: the images' folder; ``files`` are relative to it.
        files: relative image paths.
        image_size, mean, std, crop_pct, interpolation: the model's input (evaluation geometry, see
            :class:`Preprocess`; ``Preprocess.for_model(model).data_kwargs()`` gives them).
        pipeline: the model's whole pipeline instead (``data_kwargs()`` gives it where the four do not suffice).

    Photos are read by :func:`patchfield.images.read_photo`; a mask (in the stored pixel grid, as COCO
    annotations and mask files are) gets the photo's EXIF orientation, then the photo's geometry.
    """

    def __init__(self, root: str | Path, files: list[str], image_size: int | Sequence[int],
                 mean: Sequence[float], std: Sequence[float], crop_pct: float, interpolation: str = "bicubic",
                 pipeline: Preprocess | None = None) -> None:
        self.root = Path(root)
        self.files = files
        self.preprocess = pipeline or Preprocess(image_size, mean, std, crop_pct, interpolation=interpolation)
        self.skipped: dict[str, int] = {}
        self.failures: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.files)

    def image_name(self, index: int) -> str:
        return self.files[index]

    def raw_mask(self, index: int, image: Image.Image) -> np.ndarray | None:
        """Bool ``[H, W]`` in the source image's pixels, or ``None`` without a mask."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        path = self.root / self.files[index]
        try:
            photo = read_photo(path)
        except ImageReadError as e:
            self.failures[index] = e.reason
            return None
        image = photo.stored
        mask = self.raw_mask(index, image)
        x, _ = self.preprocess(photo.image)
        if mask is None:
            return x, None
        if mask.shape != (image.height, image.width):
            raise ValueError(
                f"the mask of {path} is {mask.shape[1]}x{mask.shape[0]} pixels but the image is "
                f"{image.width}x{image.height}; masks must have their image's size"
            )
        return x, self.preprocess.mask(photo.orient(Image.fromarray(mask.astype(np.uint8) * 255)))


class MaskFolder(MaskedFiles):
    """Images under ``root`` and mask PNGs under ``mask_root`` with the same relative path and stem.

    ``root/a/b.jpg`` has the mask ``mask_root/a/b.png`` (nonzero = object; :func:`mask_array`).
    Images without a mask file give ``mask = None``.

    Raises:
        FileNotFoundError: a folder is missing.
        ValueError: no image files, or no image has a mask.
    """

    def __init__(self, root: str | Path, mask_root: str | Path, image_size: int | Sequence[int] = 224,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 crop_pct: float = DEFAULT_CROP_PCT, interpolation: str = "bicubic",
                 pipeline: Preprocess | None = None) -> None:
        root, mask_root = Path(root), Path(mask_root)
        for what, folder in (("image folder (--data-root)", root), ("mask folder (--mask-root)", mask_root)):
            if not folder.is_dir():
                raise FileNotFoundError(f"{what} {folder} is not a folder")
        files = sorted(
            f.relative_to(root).as_posix() for f in root.rglob("*")
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and mask_root not in f.parents
        )
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
        self.mask_root = mask_root
        if not any(self.mask_path(f).is_file() for f in files):
            raise ValueError(
                f"none of the {len(files)} images under {root} has a mask: expected PNGs with the same stems under "
                f"{mask_root} (e.g. {self.mask_path(files[0])})"
            )
        super().__init__(root, files, image_size, mean, std, crop_pct, interpolation, pipeline)

    def mask_path(self, rel: str) -> Path:
        return self.mask_root / Path(rel).with_suffix(".png")

    def raw_mask(self, index: int, image: Image.Image) -> np.ndarray | None:
        path = self.mask_path(self.files[index])
        if not path.is_file():
            return None
        return read_mask_file(path)
