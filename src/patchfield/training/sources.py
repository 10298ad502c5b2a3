"""Data sets and ground-truth fields for training and evaluation, with clear mismatch errors."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..grid import Grid
from ..introspect import input_spec

__all__ = ["model_image_size", "model_normalisation", "open_dataset", "attach_fields", "split_batch"]


def model_image_size(model: nn.Module) -> int:
    """The square input size of a model (:func:`patchfield.introspect.input_spec`)."""
    h, w = input_spec(model)["size"]
    if h != w:
        raise ValueError(f"the model expects {h}x{w} inputs; patchfield's data sets are square: pass --image-size")
    return int(h)


def model_normalisation(model: nn.Module) -> dict[str, Any]:
    """The model's preprocessing as data-set arguments: ``{"mean", "std", "crop_pct", "interpolation"}``
    (``Preprocess.for_model(model).data_kwargs()``; the generated data sets use mean and std only)."""
    from ..preprocess import Preprocess

    return Preprocess.for_model(model).data_kwargs()


def open_dataset(
    name: str, split: str, image_size: int, root: str | Path | None = None,
    normalisation: dict[str, Any] | None = None, **kwargs: Any,
) -> Any:
    """``patchfield.data.build_dataset(name, split, image_size, root, **kwargs)``.

    ``normalisation`` (mean/std) is passed on where the data set builder accepts it.
    """
    from ..data import build_dataset as build

    params = inspect.signature(build).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in (normalisation or {}).items():
        if key not in kwargs and (key in params or takes_any):
            kwargs[key] = value
    return build(name, split, image_size, root=root, **kwargs)


def attach_fields(dataset: Any, store_path: str | Path, grid: Grid, dip: bool = True) -> tuple[Any, Any]:
    """Wrap ``dataset`` so items carry their ground-truth field: ``(WithFields(...), store)``.

    With ``dip`` the field mask is ``S_p`` (the AWD+DIP attention mask and WinfT's ``w_gt``),
    without it the window alone (the AWD attention mask, docs/spec.md §7).

    Raises:
        FileNotFoundError: no finished store at ``store_path``.
        ValueError: the store does not belong to this data set (length or fingerprint), its
            grid is not the model's, or the data set augments its images.
    """
    from ..groundtruth import GroundTruthStore, WithFields

    if getattr(getattr(dataset, "preprocess", None), "augment", False):
        raise ValueError(
            "the ground-truth fields belong to the un-augmented images: random crops and flips would misplace them; "
            "train the AWD and WinfT kinds without augmentation (drop \"augment\" from --data-kwargs)"
        )
    store = GroundTruthStore(store_path)
    store.check_grid(grid)
    store.check_dataset(dataset)
    _ = store.valid  # read the shards now: forked loader workers then share them instead of each reading them
    return WithFields(dataset, store, check=False, dip=dip), store


def split_batch(
    batch: Any, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(images, labels, field_mask or None, dropped or None)`` of a collated batch, on ``device``."""
    images, labels = batch[0], batch[1]
    mask = dropped = None
    if len(batch) >= 4:
        mask, dropped = batch[2], batch[3]
        mask = mask.to(device, non_blocking=True).bool()
        dropped = dropped.to(device, non_blocking=True).bool()
    return images.to(device, non_blocking=True), torch.as_tensor(labels).to(device, non_blocking=True), mask, dropped
