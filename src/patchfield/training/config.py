"""The training configuration, with the paper's recipe as defaults (docs/spec.md §9, Appendix A.1)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..kinds import VIT, Kind, as_kind

__all__ = ["OPTIMIZERS", "RECIPES", "TrainConfig", "RESUME_KEYS", "recipe_accumulation"]

#: Optimisers: the paper's SGD with momentum, and AdamW.
OPTIMIZERS = ("sgd", "adamw")

#: The paper's two recipes (Appendix A.1, docs/spec.md §9) as :class:`TrainConfig` overrides, plus the
#: global batch (``batch_size × accum_steps × processes``) they call for. ImageNet: batch 512 for
#: 15 epochs. CUB-200-2011: 448×448 inputs, batch 16, lr 0.03, 20,000 steps; the paper gives no
#: warm-up for CUB, the default 500 steps are kept.
RECIPES: dict[str, dict[str, Any]] = {
    "imagenet": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "epochs": 15.0, "steps": None, "warmup_steps": 500,
                 "batch_size": 64, "global_batch": 512},
    "cub": {"optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "steps": 20000, "warmup_steps": 500, "batch_size": 16,
            "global_batch": 16, "image_size": 448},
}


def recipe_accumulation(global_batch: int, batch_size: int, world_size: int) -> int:
    """Micro-batches per step so that ``batch_size × steps × world_size == global_batch``.

    >>> recipe_accumulation(512, 64, 1), recipe_accumulation(512, 64, 8)
    (8, 1)
    """
    per_step = int(batch_size) * int(world_size)
    if per_step > global_batch or global_batch % per_step:
        raise ValueError(
            f"the recipe's batch of {global_batch} is no multiple of --batch-size {batch_size} × {world_size} "
            "process(es): choose a --batch-size dividing it, or give --accum-steps"
        )
    return global_batch // per_step


#: Settings that must be equal between a run and its ``--resume`` (they shape the trajectory).
RESUME_KEYS = (
    "model", "kind", "weights", "model_kwargs", "data", "data_kwargs", "image_size", "groundtruth", "steps",
    "epochs", "batch_size", "accum_steps", "optimizer", "lr", "min_lr", "momentum", "warmup_steps", "weight_decay",
    "lambda_ce", "lambda_bce", "seed",
)


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Defaults follow the paper's ImageNet recipe (docs/spec.md §9): SGD with momentum 0.9, lr 0.01,
    500 linear warm-up steps then a cosine decay, ``L_total = 1·L_CE + 1·L_BCE``. The paper's
    batch of 512 is ``batch_size × accum_steps × world size``.

    Attributes:
        model: timm architecture name (``vit_base_patch16_224``) or any name ``timm.create_model`` knows.
        kind: the model kind, a :class:`~patchfield.kinds.Kind`; its name (``"awd-dip"``) is taken too.
        out: run folder (checkpoints, log, final ``model.safetensors`` + ``run.json``).
        data: data set name for :func:`patchfield.data.build_dataset` (``synthetic``, ``imagefolder``, ...).
        data_root: its folder, for folder data sets.
        data_kwargs: extra keyword arguments for ``build_dataset`` (e.g. ``{"num_images": 512}``).
        split: the split to train on.
        image_size: input size in pixels; ``None`` takes the model's.
        weights: optional local starting weights (timm or Hugging Face layout).
        model_kwargs: extra keyword arguments for ``timm.create_model`` (tiny configurations).
        groundtruth: ground-truth store (docs/spec.md §6); required by the AWD and WinfT kinds.
        steps: optimiser steps; ``None`` derives them from ``epochs``.
        epochs: passes over the data when ``steps`` is ``None``.
        batch_size: images per micro-batch and process.
        accum_steps: micro-batches per optimiser step (gradient accumulation).
        optimizer: ``"sgd"`` (the paper's, with ``momentum``) or ``"adamw"`` (for training small
            models from scratch, where SGD is slow to start; ``momentum`` is then unused).
        lr: peak learning rate, reached at the end of warm-up.
        min_lr: learning rate at the end of the cosine.
        momentum: SGD momentum.
        warmup_steps: linear warm-up steps.
        weight_decay: SGD weight decay (not applied to biases, norms, position embeddings, prefix tokens).
        lambda_ce: weight ``λ1`` of the cross-entropy.
        lambda_bce: weight ``λ2`` of the window BCE (WinfT only, Eq. 11, 12).
        checkpoint_every: write a resumable checkpoint every this many steps (0: only at the end).
        log_every: write a JSONL log line every this many steps.
        seed: seed of the initialisation, data order and augmentation.
        workers: data-loading worker processes per process.
        device: ``None`` picks ``cuda`` when available, else ``cpu``.
        amp: bf16 autocast; ``None`` turns it on exactly on CUDA.
        compile: a ``torch.compile`` backend (``"inductor"``, ...) for the model's forward, or ``None``.
        resume: continue from ``out/checkpoint.pt``.
        stop_after_steps: debugging: stop (as if killed, without the final files) after this many steps.
        progress: show a tqdm progress bar (rank 0 only).
    """

    model: str
    kind: Kind = VIT
    out: str = "run"
    data: str = "synthetic"
    data_root: str | None = None
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    split: str = "train"
    image_size: int | None = None
    weights: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    groundtruth: str | None = None
    steps: int | None = None
    epochs: float = 15.0
    batch_size: int = 64
    accum_steps: int = 1
    optimizer: str = "sgd"
    lr: float = 0.01
    min_lr: float = 0.0
    momentum: float = 0.9
    warmup_steps: int = 500
    weight_decay: float = 0.0
    lambda_ce: float = 1.0
    lambda_bce: float = 1.0
    checkpoint_every: int = 1000
    log_every: int = 10
    seed: int = 0
    workers: int = 0
    device: str | None = None
    amp: bool | None = None
    compile: str | None = None
    resume: bool = False
    stop_after_steps: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.kind = as_kind(self.kind)
        if self.kind.uses_groundtruth and not self.groundtruth:
            raise ValueError(
                f"kind {self.kind.name!r} needs --groundtruth STORE: the fields of a well-trained ViT "
                "(docs/spec.md §7, §8); build one with `patchfield groundtruth`"
            )
        positive = {"batch_size": self.batch_size, "accum_steps": self.accum_steps, "log_every": self.log_every}
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.steps is not None and int(self.steps) < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.steps is None and not float(self.epochs) > 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if not self.lr > 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr; got lr={self.lr}, min_lr={self.min_lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.checkpoint_every < 0 or self.workers < 0:
            raise ValueError("warmup_steps, weight_decay, checkpoint_every and workers must be non-negative")
        if self.lambda_ce < 0 or self.lambda_bce < 0 or self.lambda_ce + self.lambda_bce == 0:
            raise ValueError(f"need non-negative loss weights, not both 0; got {self.lambda_ce}, {self.lambda_bce}")
        if self.stop_after_steps is not None and self.stop_after_steps < 1:
            raise ValueError(f"stop_after_steps must be at least 1, got {self.stop_after_steps}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (the kind by its name)."""
        return {**asdict(self), "kind": self.kind.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys (checkpoints of later versions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def mismatches(self, other: TrainConfig) -> list[str]:
        """The :data:`RESUME_KEYS` on which two configurations differ, as ``"key: a != b"``."""
        a, b = self.to_dict(), other.to_dict()
        norm = {"groundtruth", "weights"}
        out = []
        for key in RESUME_KEYS:
            x, y = a[key], b[key]
            if key in norm and x is not None and y is not None:
                x, y = str(Path(x).resolve()), str(Path(y).resolve())
            if json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True):
                out.append(f"{key}: {a[key]!r} != {b[key]!r}")
        return out
