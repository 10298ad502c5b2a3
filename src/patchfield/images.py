"""Reading image files: the one reader of every command and data set (preprocessing: :mod:`patchfield.preprocess`).

How odd files are read (``docs/preprocessing.md``):

- **Modes.** RGB as is; ``L``, ``1``, ``CMYK``, ``YCbCr``, ``P`` without transparency and the rest through
  Pillow's ``convert("RGB")``. 16-bit grayscale (``I;16*``) is scaled by its range, ``v * 255 / 65535``;
  32-bit integer grayscale (``I``) the same when its values lie in ``[0, 65535]`` (16-bit data, as Pillow keeps
  some 16-bit PNGs), else by the int32 range; 32-bit float (``F``) is read as ``[0, 1]`` (``v * 255``, values
  outside clipped, NaN as 0). Pillow's own ``convert("RGB")`` would clip 16-bit values to 255 and floats to 0.
- **Alpha.** ``RGBA``, ``LA``, ``PA`` and palette images with transparency are composited over white (what a
  viewer shows on a white page, and Hugging Face's ``convert_rgb``).
- **EXIF orientation** is applied: the photo is analysed upright, as viewers show it. Its object mask (a mask
  file or COCO annotations, both in the stored pixel grid) gets the same flip/rotation (:meth:`Photo.orient`),
  so the two stay aligned.
- **Refused**, with one :class:`ImageReadError` naming the file and the reason: missing, empty (0 bytes), not
  an image (e.g. text named ``.jpg``), truncated or corrupt pixel data, and decompression bombs (more pixels
  than Pillow's ``Image.MAX_IMAGE_PIXELS``, its warning as well as its error).
- Tiny images (1x1, smaller than one patch) are read; the preprocessing upsamples them as every pipeline does.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from .preprocess import Preprocess

__all__ = ["SKIP_ERRORS", "ImageBatch", "ImageReadError", "Photo", "Skipped", "read_batches", "read_image",
           "read_photo", "skip_reason", "stored_geometry", "to_rgb"]

log = logging.getLogger(__name__)

#: EXIF orientation -> the transpose that makes the stored pixels upright (Pillow's ``ImageOps.exif_transpose``).
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}
_EXIF_ORIENTATION = 0x0112


class ImageReadError(ValueError):
    """An image file that cannot be read (missing, empty, corrupt, not an image, too large); the message names
    the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Skipped:
    """An image a run left out, and why (the ``skipped`` entries of a command's JSON)."""

    image: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"image": self.image, "reason": self.reason}


@dataclass(frozen=True)
class Photo:
    """A photo as read: RGB pixels in the file's stored grid and its EXIF orientation (1 = upright)."""

    stored: Image.Image
    orientation: int = 1

    def orient(self, image: Image.Image) -> Image.Image:
        """``image`` (the photo, or a mask in the stored grid) flipped/rotated as the orientation says."""
        method = _ORIENT.get(self.orientation)
        return image.transpose(method) if method is not None else image

    @property
    def image(self) -> Image.Image:
        """The RGB photo, upright."""
        return self.orient(self.stored)


def _scaled_gray(image: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float grayscale image as 8-bit ``L``, scaled by the mode's range (module doc)."""
    a = np.asarray(image)
    if image.mode == "F":
        v = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        out = np.clip(v, 0.0, 1.0) * 255.0
    elif image.mode == "I" and not (a.size and (a.min() < 0 or a.max() > 65535)):
        out = a.astype(np.float64) * (255.0 / 65535.0)
    elif image.mode == "I":
        out = (a.astype(np.float64) + 2.0 ** 31) * (255.0 / (2.0 ** 32 - 1))
    else:  # I;16, I;16B, I;16L, I;16N
        out = a.astype(np.float64) * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB by the rules of the module doc (alpha over white, deep grayscale scaled)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("F", "I") or image.mode.startswith("I;16"):
        return _scaled_gray(image).convert("RGB")
    if image.mode == "P" and "transparency" in image.info or image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_photo(path: str | Path) -> Photo:
    """Read an image file (module doc): its RGB pixels and EXIF orientation.

    Raises:
        ImageReadError: the file cannot be read; the message names it and says why.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageReadError(path, "a folder, not an image file") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
                rgb = to_rgb(im)
                rgb.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(path, f"too many pixels, refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image Pillow can read") from None
    except IsADirectoryError:
        raise ImageReadError(path, "a folder, not an image file") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ImageReadError(path, f"corrupt or truncated image data ({reason})") from None
    return Photo(rgb, orientation if orientation in _ORIENT else 1)


def stored_geometry(path: str | Path) -> tuple[tuple[int, int], int]:
    """``((width, height), EXIF orientation)`` of an image file from its header alone (no pixel decoding).

    Raises:
        ImageReadError: the file cannot be opened as an image.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
                return im.size, orientation if orientation in _ORIENT else 1
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(path, f"too many pixels, refused as a possible decompression bomb ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(path, f"not a readable image ({' '.join(str(e).split())})") from None


def read_image(path: str | Path) -> Image.Image:
    """An image file as an upright RGB image (:func:`read_photo`), raising :class:`ImageReadError` on failure."""
    return read_photo(path).image


#: What an image's own guard catches: the image is skipped with the reason, the run goes on.
SKIP_ERRORS = (ImageReadError, ValueError, OSError, RuntimeError, MemoryError, Image.DecompressionBombError)


def skip_reason(error: BaseException) -> str:
    """The reason recorded for a skipped image (the file's name is recorded beside it)."""
    if isinstance(error, ImageReadError):
        return error.reason
    return " ".join(f"{type(error).__name__}: {error}".split())[:500]


@dataclass
class ImageBatch:
    """One batch of :func:`read_batches`.

    Attributes:
        images: normalised ``[B, 3, H, W]`` of the readable files (``None`` when none was).
        crops: the ``uint8`` crops ``[H, W, 3]`` drawn on, one per readable file.
        items: the jobs of the readable files, in order.
        failed: ``(job, error)`` of the files that could not be read or preprocessed.
    """

    images: torch.Tensor | None
    crops: list[np.ndarray] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    failed: list[tuple[Any, Exception]] = field(default_factory=list)


def read_batches(jobs: Sequence[Any], preprocess: Preprocess, batch_size: int,
                 path_of: Callable[[Any], Any] = lambda job: job[0]) -> Iterator[ImageBatch]:
    """Read and preprocess image files in batches of ``batch_size`` jobs; a file that cannot be read or
    preprocessed is reported in :attr:`ImageBatch.failed` (and logged) and the others go on.

    ``jobs`` are anything that names a file (by default a ``(path, ...)`` tuple; ``path_of`` picks the path).
    """
    for start in range(0, len(jobs), batch_size):
        batch = ImageBatch(None)
        tensors = []
        for job in jobs[start:start + batch_size]:
            try:
                x, crop = preprocess(read_image(path_of(job)))
            except SKIP_ERRORS as e:
                log.warning("skipped %s: %s", path_of(job), skip_reason(e))
                batch.failed.append((job, e))
                continue
            tensors.append(x)
            batch.crops.append(crop)
            batch.items.append(job)
        batch.images = torch.stack(tensors) if tensors else None
        yield batch
