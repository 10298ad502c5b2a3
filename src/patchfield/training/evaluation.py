"""Top-1, top-5 and ``E_O`` of a model on a data set (docs/spec.md §3, §5, §8 by model kind)."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..introspect import model_grid
from ..kinds import VIT, Kind, as_kind, kind_by_name
from ..utils.distributed import DistEnv, Sums, distributed_env, sum_over_group
from .sources import attach_fields, model_image_size, model_normalisation, open_dataset, split_batch

__all__ = ["EvalSums", "evaluate", "evaluate_run"]


@dataclass(frozen=True)
class EvalSums(Sums):
    """Counts over the images one process evaluated (summed across processes by ``sum_over_group``).

    Attributes:
        top1, topk: images whose label is the first, or among the first ``k``, predictions.
        images: the images.
        interactions: their ``E_O`` summands (:meth:`patchfield.kinds.Kind.forward`).
    """

    top1: float = 0.0
    topk: float = 0.0
    images: float = 0.0
    interactions: float = 0.0


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    kind: Kind | str,
    *,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy and expected interactions of ``model`` over ``loader``.

    ``E_O`` by kind: ``vit`` ``N²`` per image; ``awd`` the windows' ``O`` (docs/spec.md §3) and
    ``awd-dip`` ``Σ_p |S_p|`` (§5), both counted on the masks the loader hands in; WinfT the
    ones of its predicted ``W`` (§8); see :meth:`patchfield.kinds.Kind.forward`. Under an initialised process
    group the sums are all-reduced (each process passing its own shard).

    Args:
        model: a model of ``kind`` (see :func:`patchfield.training.build_model`).
        loader: iterable of ``(images, labels)`` or, for the AWD kinds, ``(images, labels, field_mask, dropped)``.
        kind: a :class:`~patchfield.kinds.Kind` (or its name, one of :data:`patchfield.kinds.KIND_NAMES`).
        device: where to run; ``None`` keeps the model's device.
        amp: bf16 autocast; ``None`` turns it on exactly on CUDA.
        progress: show a progress bar.

    Returns:
        ``{"kind" (its name), "num_images", "top1", "top5", "top5_k", "eo", "eo_full", "eo_ratio", "grid"}``;
        ``top5_k`` is ``min(5, classes)``, ``eo_full`` is ``N²``.
    """
    kind = as_kind(kind)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev).eval()
    grid = model_grid(model)
    use_amp = amp if amp is not None else dev.type == "cuda"
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if use_amp else nullcontext
    sums = EvalSums()
    k = None
    bar = tqdm(loader, unit="batch", desc=f"evaluate {kind.name}", file=sys.stderr, disable=not progress)
    for batch in bar:
        if batch is None:  # every image of the batch was unreadable (reported by the data set)
            continue
        images, labels, mask, dropped = split_batch(batch, dev)
        if kind.attends_fields and mask is None:
            raise ValueError(f"evaluating kind {kind.name!r} needs the fields of the images: pass a ground-truth store")
        with autocast():
            logits, _, interactions = kind.forward(model, images, mask, dropped)
        if not bool(torch.isfinite(logits).all()):
            from ..errors import InputError

            raise InputError("the model's output holds NaN or Inf values: its weights or these images are broken; "
                             "no accuracy or E_O is reported from them")
        k = min(5, logits.shape[-1])
        top = logits.float().topk(k, dim=-1).indices
        hit = top == labels[:, None]
        sums += EvalSums(float(hit[:, 0].sum()), float(hit.any(-1).sum()), float(labels.shape[0]),
                         interactions.double().sum().item())
    bar.close()
    sums = EvalSums.from_tensor(sum_over_group(sums.as_tensor(), dev))
    count = sums.images
    if count == 0:
        raise ValueError("the data set is empty: nothing to evaluate")
    full = float(grid.n * grid.n)
    eo = sums.interactions / count
    return {
        "kind": kind.name, "num_images": int(count), "top1": sums.top1 / count, "top5": sums.topk / count,
        "top5_k": int(k), "eo": eo, "eo_full": full, "eo_ratio": eo / full, "grid": [grid.height, grid.width],
    }


def _collate():
    """The data package's collate that drops unreadable (``None``) items."""
    from ..data.registry import collate_skip

    return collate_skip


def evaluate_run(
    *,
    run_dir: str | Path | None = None,
    model_name: str | None = None,
    weights: str | Path | None = None,
    kind: Kind | str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    data: str = "synthetic",
    split: str = "val",
    data_root: str | Path | None = None,
    data_kwargs: dict[str, Any] | None = None,
    image_size: int | None = None,
    groundtruth: str | Path | None = None,
    batch_size: int = 64,
    workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a finished run folder, or a timm model with local weights, on a data set.

    Either ``run_dir`` (``model.safetensors`` + ``run.json``) or ``model_name`` (with ``weights``
    and ``kind``, a :class:`~patchfield.kinds.Kind` or its name). The AWD kinds need ``groundtruth``: a
    store built on this data set and split.
    Under ``torchrun`` every process evaluates every ``world_size``-th image and all return the
    totals over the whole data set.
    """
    with distributed_env(device) as env:
        return _evaluate_run(
            env, run_dir=run_dir, model_name=model_name, weights=weights, kind=kind, model_kwargs=model_kwargs,
            data=data, split=split, data_root=data_root, data_kwargs=data_kwargs, image_size=image_size,
            groundtruth=groundtruth, batch_size=batch_size, workers=workers, progress=progress,
        )


def _evaluate_run(env: DistEnv, *, run_dir, model_name, weights, kind, model_kwargs, data, split, data_root,
                  data_kwargs, image_size, groundtruth, batch_size, workers, progress) -> dict[str, Any]:
    from ..loading import is_run_directory, load_run
    from .build import build_model

    if run_dir is None and model_name is not None and weights is None and is_run_directory(model_name):
        run_dir, model_name = model_name, None  # --model RUN_DIR, as everywhere else
    if (run_dir is None) == (model_name is None):
        raise ValueError("give either a run folder or --model (with --weights and --kind), not both or neither")
    kind = as_kind(kind) if kind is not None else None
    if run_dir is not None:
        model, info = load_run(run_dir)
        made = kind_by_name(info["kind"])
        if kind is not None and kind != made:
            raise ValueError(f"{run_dir} holds a {made.name!r} model; --kind {kind.name!r} does not fit")
        kind = made
    else:
        kind = kind or VIT
        if weights is None:
            raise ValueError(f"no weights for {model_name}: pass --weights FILE (a local checkpoint) or a run folder")
        from ..loading import load_state_dict

        sd = load_state_dict(weights)
        num_classes = sd["head.weight"].shape[0] if "head.weight" in sd else None
        model = build_model(model_name, kind, num_classes=num_classes, image_size=image_size, weights=weights,
                            model_kwargs=model_kwargs)
        info = {"model": model_name, "kind": kind.name}
    if kind.attends_fields and groundtruth is None:
        raise ValueError(f"a {kind.name!r} model needs --groundtruth STORE: the fields of this data set's images")
    dev = env.device
    size = model_image_size(model)
    if image_size is not None and image_size != size:
        raise ValueError(f"--image-size {image_size} differs from the model's input size {size}")
    dataset = open_dataset(data, split, size, data_root, model_normalisation(model), **(data_kwargs or {}))
    classes = getattr(dataset, "num_classes", None)
    head = getattr(model, "num_classes", None)
    if classes is not None and head is not None and int(classes) != int(head):
        raise ValueError(f"the model predicts {head} classes but data set {data!r} has {classes}")
    if groundtruth is not None and kind.attends_fields:
        dataset, _ = attach_fields(dataset, groundtruth, model_grid(model), dip=kind.dip_fields)
    if env.distributed:
        dataset = Subset(dataset, range(env.rank, len(dataset), env.world_size))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=dev.type == "cuda", collate_fn=_collate())
    result = evaluate(model, loader, kind, device=dev, progress=progress and env.is_main)
    result.update({"model": info["model"], "data": data, "split": split, "processes": env.world_size,
                   "run": str(run_dir) if run_dir is not None else None,
                   "groundtruth": str(groundtruth) if groundtruth is not None else None})
    return result
