"""The preprocessing rule: how a photo (and its object mask) becomes a model input. The only copy in patchfield.

patchfield does no crop arithmetic of its own; each model gets the pipeline its ecosystem evaluates it with
(``docs/preprocessing.md``):

- **timm models and every model described by an** :class:`InputSpec` (torchvision and open_clip ViTs give
  theirs through :func:`patchfield.introspect.input_spec`): timm's own evaluation transform,
  ``timm.data.create_transform(input_size, interpolation, mean, std, crop_pct, crop_mode)`` (torchvision's
  ``Resize(floor(size / crop_pct))`` of the short side, ``CenterCrop(size)``, ``ToTensor``, ``Normalize``).
  An :class:`InputSpec` with ``resize_size`` (torchvision weights' ``transforms()``: resize 256, crop 224)
  gets torchvision's ``Resize(resize_size)`` + ``CenterCrop(size)`` instead.
- **Hugging Face model folders with** ``preprocessor_config.json``: ``AutoImageProcessor.from_pretrained(folder)``
  itself (:class:`ProcessorPreprocess`).

An object mask goes through the same geometry with nearest-neighbour resampling (the same transforms, or the
same processor, run on the mask), so it stays pixel-aligned with its photo. Training (``augment=True``):
random-resized crop (scale 0.08-1, ratio 3/4-4/3; the centre crop after 10 misses, as torchvision) and a
horizontal flip, drawn from the ``generator`` given to the call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .images import to_rgb
from .introspect import input_spec, is_huggingface, unwrap

__all__ = [
    "DEFAULT_CROP_PCT", "INTERPOLATIONS", "MAX_RESIZED_PIXELS", "RESIZE_MODES", "InputSpec", "Preprocess",
    "ProcessorPreprocess", "as_size", "model_data_config",
]

DEFAULT_CROP_PCT = 0.875
#: PIL resampling filter of each interpolation name (the names timm and torchvision use).
INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                  "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
#: How the photo is resized before the centre crop, and timm's ``crop_mode`` of each: ``shortest`` keeps the
#: aspect ratio (the short side to ``size / crop_pct``), ``squash`` resizes both sides to ``size / crop_pct``,
#: ``border`` fits the long side and pads.
RESIZE_MODES = {"shortest": "center", "squash": "squash", "border": "border"}
#: The most pixels the resize before the crop may make (~300 MB of RGB): more is a photo of extreme aspect ratio.
MAX_RESIZED_PIXELS = 100_000_000
#: The file a Hugging Face model folder keeps its image processor in.
PROCESSOR_CONFIG = "preprocessor_config.json"


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


@dataclass(frozen=True)
class InputSpec:
    """A model family's evaluation preprocessing, as plain settings.

    Attributes:
        size: output ``(H, W)``.
        mean, std: per-channel normalisation of the ``[0, 1]`` image.
        crop_pct: centre-crop fraction: the photo is resized to ``size / crop_pct`` first (``1.0``: to the size).
        interpolation: resampling of the photo (:data:`INTERPOLATIONS`; masks always ``nearest``).
        resize_mode: :data:`RESIZE_MODES` (``shortest`` by default, timm's ``center``).
        resize_size: the short side before the crop, given directly (torchvision weights' ``resize_size``);
            ``crop_pct`` is then unused.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    resize_size: int | None = None

    @classmethod
    def of(cls, spec: InputSpec | Mapping[str, Any]) -> InputSpec:
        """An :class:`InputSpec` from itself or :func:`patchfield.introspect.input_spec`'s mapping (extra keys
        ``resize_mode`` and ``resize_size`` are optional; other keys are ignored)."""
        if isinstance(spec, InputSpec):
            return spec
        known = {k: spec[k] for k in ("crop_pct", "interpolation", "resize_mode", "resize_size")
                 if spec.get(k) is not None}
        return cls(as_size(spec["size"]), tuple(float(m) for m in spec["mean"]),
                   tuple(float(s) for s in spec["std"]), **known)


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """``{"size", "mean", "std", "crop_pct", "interpolation", ...}`` the model expects.

    The one introspection is :func:`patchfield.introspect.input_spec`.
    """
    return input_spec(model)


def _geometry_transforms(spec: InputSpec, interpolation: str) -> list:
    """The geometry steps (PIL in, PIL out) of the ecosystem's evaluation transform for ``spec``."""
    from timm.data import create_transform
    from torchvision import transforms as T

    if spec.resize_size is not None:  # torchvision weights' transforms(): Resize(resize_size) + CenterCrop(size)
        from timm.data.transforms import str_to_interp_mode

        return [T.Resize(spec.resize_size, interpolation=str_to_interp_mode(interpolation)), T.CenterCrop(spec.size)]
    steps = create_transform(input_size=(3, *spec.size), is_training=False, interpolation=interpolation,
                             mean=spec.mean, std=spec.std, crop_pct=spec.crop_pct,
                             crop_mode=RESIZE_MODES[spec.resize_mode]).transforms
    tail = [type(t).__name__ for t in steps[-2:]]
    if tail != ["MaybeToTensor", "Normalize"]:  # timm's layout changed: refuse rather than guess
        raise RuntimeError(f"timm's evaluation transform ends in {tail}, not MaybeToTensor + Normalize")
    return list(steps[:-2])


class Preprocess:
    """Geometry plus normalisation: the preprocessing rule (module docstring).

    Args:
        size: output ``(H, W)``.
        mean, std: per-channel normalisation.
        crop_pct: evaluation centre-crop fraction (``1.0``: resize the short side to the size itself).
        augment: random-resized crop and horizontal flip instead of the centre crop.
        interpolation: resampling of the image (``bicubic``, ``bilinear``, ...; masks always ``nearest``).
        resize_mode, resize_size: as :class:`InputSpec`.
    """

    def __init__(self, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float],
                 crop_pct: float = DEFAULT_CROP_PCT, augment: bool = False, interpolation: str = "bicubic",
                 resize_mode: str = "shortest", resize_size: int | None = None) -> None:
        if not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0); got {mean}, {std}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize_mode!r}; use one of {', '.join(RESIZE_MODES)}")
        if resize_size is not None and int(resize_size) < 1:
            raise ValueError(f"resize_size must be positive, got {resize_size}")
        self.size = as_size(size)
        self.mean = torch.tensor([float(m) for m in mean])[:, None, None]
        self.std = torch.tensor([float(s) for s in std])[:, None, None]
        self.crop_pct = float(crop_pct)
        self.augment = bool(augment)
        self.interpolation = interpolation
        self.resize_mode = resize_mode
        self.resize_size = None if resize_size is None else int(resize_size)
        self._image_steps: list | None = None
        self._mask_steps: list | None = None

    @property
    def spec(self) -> InputSpec:
        """The settings as an :class:`InputSpec`."""
        return InputSpec(self.size, tuple(self.mean.flatten().tolist()), tuple(self.std.flatten().tolist()),
                         self.crop_pct, self.interpolation, self.resize_mode, self.resize_size)

    @classmethod
    def from_spec(cls, spec: InputSpec | Mapping[str, Any], augment: bool = False) -> Preprocess:
        """The pipeline of an :class:`InputSpec` (or :func:`patchfield.introspect.input_spec`'s mapping)."""
        s = InputSpec.of(spec)
        return cls(s.size, s.mean, s.std, s.crop_pct, augment, s.interpolation, s.resize_mode, s.resize_size)

    @classmethod
    def for_model(cls, model: nn.Module, size: int | Sequence[int] | None = None, augment: bool = False,
                  **overrides: Any) -> Preprocess:
        """The model's own preprocessing (module docstring), at its input size or ``size``.

        ``overrides`` replace :class:`InputSpec` fields (``crop_pct``, ``mean``, ``std``, ``interpolation``,
        ``resize_mode``, ``resize_size``; ``None`` values are ignored): a user's own checkpoint whose
        preprocessing the model does not record. A Hugging Face model loaded from a folder with
        ``preprocessor_config.json`` gets its :class:`ProcessorPreprocess`.

        Raises:
            ValueError: an override that does not apply (``crop_pct``, ``resize_mode`` or ``resize_size`` with
                an image processor, whose own config says how it crops), or a bad value.
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(overrides) - {"crop_pct", "mean", "std", "interpolation", "resize_mode", "resize_size"}
        if unknown:
            raise TypeError(f"unknown preprocessing override(s): {', '.join(sorted(unknown))}")
        folder = _processor_folder(model)
        if folder is not None and not augment:
            return ProcessorPreprocess.from_folder(folder, size=size, **overrides)
        spec = InputSpec.of(input_spec(model))
        if "crop_pct" in overrides and "resize_size" not in overrides:
            overrides["resize_size"] = None  # a given crop_pct replaces the family's resize size (torchvision's 256)
        if "mean" in overrides or "std" in overrides:
            overrides = {**overrides, **{k: tuple(float(v) for v in overrides[k])
                                         for k in ("mean", "std") if k in overrides}}
        spec = replace(spec, **overrides, **({"size": as_size(size)} if size is not None else {}))
        return cls.from_spec(spec, augment)

    def data_kwargs(self) -> dict[str, Any]:
        """``mean``, ``std``, ``crop_pct``, ``interpolation`` as :func:`patchfield.data.build_dataset` takes them,
        and ``pipeline`` (this object) when those four do not say everything (a resize size or mode of its own,
        an image processor): the file-backed data sets then use it as is."""
        out = {"mean": tuple(self.mean.flatten().tolist()), "std": tuple(self.std.flatten().tolist()),
               "crop_pct": self.crop_pct, "interpolation": self.interpolation}
        if self.resize_mode != "shortest" or self.resize_size is not None:
            out["pipeline"] = self
        return out

    def describe(self) -> str:
        """A one-line account of the pipeline (for logs and fingerprints)."""
        s = self.spec
        how = f"resize {s.resize_size}" if s.resize_size is not None else f"{s.resize_mode} crop_pct {s.crop_pct:g}"
        return (f"{s.size[0]}x{s.size[1]} {how} {s.interpolation} mean {tuple(round(m, 6) for m in s.mean)} "
                f"std {tuple(round(v, 6) for v in s.std)}")

    # -- geometry ---------------------------------------------------------------------------------------------

    def _steps(self, mask: bool) -> list:
        if mask:
            if self._mask_steps is None:
                self._mask_steps = _geometry_transforms(self.spec, "nearest")
            return self._mask_steps
        if self._image_steps is None:
            self._image_steps = _geometry_transforms(self.spec, self.interpolation)
        return self._image_steps

    def random_box(self, width: int, height: int,
                   generator: torch.Generator | None = None) -> tuple[tuple[int, int, int, int], bool] | None:
        """Training: a random-resized-crop box ``(left, top, right, bottom)`` and whether to flip, or ``None``
        after 10 misses (the caller falls back to the evaluation geometry, as torchvision does)."""
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
        return None

    def geometry(self, image: Image.Image, mask: bool = False) -> Image.Image:
        """``image`` through the evaluation geometry (``mask``: nearest-neighbour)."""
        for step in self._steps(mask):
            image = step(image)
        return image

    def normalise(self, crop: np.ndarray) -> torch.Tensor:
        """A ``uint8`` crop ``[H, W, 3]`` as the normalised ``[3, H, W]`` tensor (``ToTensor`` + ``Normalize``)."""
        x = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
        return (x - self.mean) / self.std

    def check_resizable(self, width: int, height: int) -> None:
        """``ValueError`` when resizing a ``width`` x ``height`` photo's short side would make more than
        :data:`MAX_RESIZED_PIXELS` (a photo of extreme aspect ratio, e.g. 1 x 100000 px)."""
        short = self.resize_size or max(self.size) / self.crop_pct
        scale = short / max(1, min(width, height))
        if self.resize_mode == "shortest" and width * height * scale * scale > MAX_RESIZED_PIXELS:
            raise ValueError(f"a {width}x{height} photo is too elongated: resizing its short side to {short:.0f} px "
                             f"would make more than {MAX_RESIZED_PIXELS} pixels")

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Normalised ``[3, H, W]`` tensor and the ``uint8`` crop ``[H, W, 3]`` (any mode: ``images.to_rgb``)."""
        if image.mode != "RGB":
            image = to_rgb(image)
        self.check_resizable(image.width, image.height)
        drawn = self.random_box(image.width, image.height, generator) if self.augment else None
        if drawn is not None:
            box, flip = drawn
            h, w = self.size
            out = image.resize((w, h), resample=INTERPOLATIONS[self.interpolation], box=box)
            out = out.transpose(Image.FLIP_LEFT_RIGHT) if flip else out
        else:
            out = self.geometry(image)
        crop = np.asarray(out, dtype=np.uint8)
        return self.normalise(crop), crop

    def mask(self, mask: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
        """An object mask (nonzero = object; an image or an ``[h, w]`` array) through the evaluation geometry.

        Returns bool ``[H, W]``, pixel-aligned with the crop of a photo of the mask's size.
        """
        return torch.from_numpy(np.asarray(self.geometry(_mask_image(mask), mask=True)) > 0)


def _mask_image(mask: Image.Image | np.ndarray | torch.Tensor) -> Image.Image:
    """A mask as an ``L`` image, 255 = object."""
    if isinstance(mask, Image.Image):
        return mask.convert("L")
    a = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if a.ndim != 2:
        raise ValueError(f"a mask must be [H, W]; got shape {a.shape}")
    return Image.fromarray((a != 0).astype(np.uint8) * 255)


def _processor_folder(model: nn.Module) -> Path | None:
    """The folder of a Hugging Face model loaded from one that holds ``preprocessor_config.json``."""
    model = unwrap(model)
    if not is_huggingface(model):
        return None
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or getattr(model, "name_or_path", "")
    folder = Path(str(name)) if name else None
    return folder if folder is not None and (folder / PROCESSOR_CONFIG).is_file() else None


def _pil_resample(interpolation: str) -> Any:
    from transformers.image_utils import PILImageResampling

    return PILImageResampling(int(INTERPOLATIONS[interpolation]))


class ProcessorPreprocess(Preprocess):
    """A Hugging Face image processor (``AutoImageProcessor.from_pretrained(folder)``) as the preprocessing.

    The tensor is the processor's ``pixel_values``; the ``uint8`` crop is the processor's output without
    rescaling and normalising; a mask is the processor's geometry with nearest-neighbour resampling. ``size``,
    ``mean``, ``std`` and ``interpolation`` mirror the processor's settings (for reports and data sets).
    """

    def __init__(self, processor: Any, folder: Path, call_kwargs: dict[str, Any] | None = None) -> None:
        self.processor = processor
        self.folder = Path(folder)
        self.call_kwargs = dict(call_kwargs or {})
        probe = self._run(Image.new("RGB", (61, 47)), {})
        mean = self.call_kwargs.get("image_mean", getattr(processor, "image_mean", None)) or (0.5, 0.5, 0.5)
        std = self.call_kwargs.get("image_std", getattr(processor, "image_std", None)) or (0.5, 0.5, 0.5)
        resample = self.call_kwargs.get("resample", getattr(processor, "resample", None))
        names = {int(v): k for k, v in INTERPOLATIONS.items()}
        interpolation = names.get(int(resample), "bilinear") if resample is not None else "bilinear"
        crop = bool(getattr(processor, "do_center_crop", False))
        super().__init__(tuple(probe.shape[-2:]), tuple(mean), tuple(std), 1.0, False, interpolation,
                         "shortest" if crop else "squash")

    @classmethod
    def from_folder(cls, folder: str | Path, size: int | Sequence[int] | None = None,
                    **overrides: Any) -> ProcessorPreprocess:
        """``AutoImageProcessor.from_pretrained(folder)`` with ``mean``/``std``/``interpolation`` overrides (given
        to the processor as ``image_mean``/``image_std``/``resample``) and the output ``size`` when asked for.

        Raises:
            ValueError: the processor cannot be read, or an override an image processor does not take.
        """
        folder = Path(folder)
        bad = sorted(set(overrides) & {"crop_pct", "resize_mode", "resize_size"})
        if bad:
            raise ValueError(f"{folder / PROCESSOR_CONFIG} says how this model resizes and crops; "
                             f"edit it instead of giving {', '.join('--' + b.replace('_', '-') for b in bad)}")
        try:
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
        except ImportError as e:
            raise ImportError("a Hugging Face image processor needs transformers: pip install 'patchfield[hf]'") from e
        except Exception as e:  # a broken preprocessor_config.json
            raise ValueError(f"could not read the image processor in {folder / PROCESSOR_CONFIG}: "
                             f"{' '.join(str(e).split())[:300]}") from e
        kwargs: dict[str, Any] = {}
        if "mean" in overrides:
            kwargs["image_mean"] = [float(v) for v in overrides["mean"]]
        if "std" in overrides:
            kwargs["image_std"] = [float(v) for v in overrides["std"]]
        if "interpolation" in overrides:
            if overrides["interpolation"] not in INTERPOLATIONS:
                raise ValueError(f"unknown interpolation {overrides['interpolation']!r}; use one of "
                                 f"{', '.join(INTERPOLATIONS)}")
            kwargs["resample"] = _pil_resample(overrides["interpolation"])
        out = cls(processor, folder, kwargs)
        if size is not None and as_size(size) != out.size:
            kwargs.update(_resized(processor, out.size, as_size(size)))
            out = cls(processor, folder, kwargs)
        return out

    def _run(self, image: Image.Image, extra: dict[str, Any]) -> torch.Tensor:
        values = self.processor(images=image, return_tensors="pt", **{**self.call_kwargs, **extra})["pixel_values"]
        return torch.as_tensor(values)[0]

    def data_kwargs(self) -> dict[str, Any]:
        return {**super().data_kwargs(), "pipeline": self}

    def describe(self) -> str:
        return f"{type(self.processor).__name__} from {self.folder / PROCESSOR_CONFIG} {self.call_kwargs or ''}"

    def geometry(self, image: Image.Image, mask: bool = False) -> Image.Image:
        extra: dict[str, Any] = {"do_rescale": False, "do_normalize": False}
        if mask:
            extra["resample"] = _pil_resample("nearest")
            image = image.convert("RGB")
        out = self._run(image, extra).permute(1, 2, 0).float().round().clamp(0, 255).to(torch.uint8).numpy()
        return Image.fromarray(out[..., 0] if mask else out)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> tuple[torch.Tensor, np.ndarray]:
        if image.mode != "RGB":
            image = to_rgb(image)
        return self._run(image, {}).float(), np.asarray(self.geometry(image), dtype=np.uint8)


def _resized(processor: Any, current: tuple[int, int], wanted: tuple[int, int]) -> dict[str, Any]:
    """Processor call arguments giving ``wanted`` outputs: the crop set to it and the resize scaled alike, or
    the resize set to it (a processor without a crop)."""
    size = getattr(processor, "size", None)
    short = size.get("shortest_edge") if isinstance(size, Mapping) else getattr(size, "shortest_edge", None)
    target = {"height": wanted[0], "width": wanted[1]}
    if getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None) is not None:
        out: dict[str, Any] = {"crop_size": target}
        if short:
            out["size"] = {"shortest_edge": int(round(short * min(wanted) / min(current)))}
        return out
    return {"size": target}
