"""The training loop: ViT, AWD-ViT, AWD-ViT + DIP and WinfT, alone or under ``torchrun``."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import one_line
from ..grid import Grid
from ..kinds import VIT, Kind, as_kind
from ..utils.distributed import DistEnv, Sums, all_gather_objects, all_reduce_sum, distributed_env
from ..utils.fingerprint import file_hash
from ..utils.io import atomic_write
from ..utils.lock import FolderLock, FolderLockedError
from .build import build_model, model_grid, unwrap
from .checkpoint import (
    CHECKPOINT,
    export_run,
    isolated_rng,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig
from .data import batches_per_epoch, make_loader
from .losses import total_loss
from .schedule import build_scheduler
from .sources import attach_fields, model_image_size, model_normalisation, open_dataset, split_batch

__all__ = ["train", "accumulate_gradients", "build_optimizer", "logged_time", "LOG_FILE", "Prepared", "StepSums"]

LOG_FILE = "log.jsonl"
logger = logging.getLogger(__name__)


def logged_time(log: Path) -> tuple[float, int]:
    """``(seconds, steps)`` of training a run's log (``log.jsonl``) accounts for: the sum of ``images /
    images_per_s`` over its lines and the last line's step (``(0.0, 0)`` without a log). The log is trimmed to the
    checkpoint on resume, so its lines cover steps 1 to the last one, over every session that trained it. A line
    that is not a log record (cut short by a kill, not yet trimmed by a resume) is passed over."""
    if not log.is_file():
        return 0.0, 0
    seconds, step = 0.0, 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        numbers = [row.get(k) if isinstance(row, dict) else None for k in ("step", "images", "images_per_s")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            continue
        if numbers[2] > 0:
            seconds += numbers[1] / numbers[2]
        step = max(step, int(numbers[0]))
    return seconds, step


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (or AdamW); weight decay skips biases, norms, position embeddings and prefix tokens."""
    decay, no_decay = [], []
    skip = set(getattr(unwrap(model), "no_weight_decay", lambda: set())())
    for name, p in unwrap(model).named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def _grouped(loader, size: int):
    """Consecutive groups of ``size`` micro-batches (a last, shorter group is dropped)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []


@dataclass
class StepSums(Sums):
    """Sums over the images of some micro-batches (one process): what a log line averages.

    Attributes:
        ce, bce, loss: the cross-entropy, window BCE and total loss, each times the micro-batch's images.
        correct: images whose top-1 prediction is their label.
        images: the images.
        interactions: their ``E_O`` summands (:meth:`patchfield.kinds.Kind.forward`).
    """

    ce: float = 0.0
    bce: float = 0.0
    loss: float = 0.0
    correct: float = 0.0
    images: float = 0.0
    interactions: float = 0.0


def accumulate_gradients(
    model: nn.Module,
    kind: Kind | str,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]],
    num_patches: int | None = None,
    lambda_ce: float = 1.0,
    lambda_bce: float = 1.0,
    autocast=nullcontext,
    no_sync: bool = False,
) -> StepSums:
    """Backpropagate ``L_total`` over micro-batches of equal size into ``.grad`` (one optimiser step's worth).

    Each micro-batch's loss is divided by their count, so the summed gradient equals that of
    one batch holding them all. Under DDP (``no_sync``) gradients are all-reduced once, on the last.

    Args:
        model: the model (possibly DDP-wrapped), in train mode.
        kind: the training kind (a :class:`~patchfield.kinds.Kind` or its name).
        micro_batches: ``(images, labels, field_mask, dropped)`` each, on the model's device.
        num_patches: unused (the interactions come from :meth:`patchfield.kinds.Kind.forward`); kept so
            existing calls work.
        lambda_ce, lambda_bce: loss weights.
        autocast: a context factory (bf16 autocast on GPU).
        no_sync: skip the gradient all-reduce on all micro-batches but the last.

    Returns:
        The sums over the micro-batches' images.
    """
    kind = as_kind(kind)
    sums = StepSums()
    k = len(micro_batches)
    for j, (images, labels, mask, dropped) in enumerate(micro_batches):
        sync = model.no_sync if (no_sync and j < k - 1) else nullcontext
        with sync():
            with autocast():
                logits, window_logits, interactions = kind.forward(
                    model, images, mask, dropped, window_logits=kind.learns_windows
                )
            parts = total_loss(logits, labels, window_logits, mask, lambda_ce, lambda_bce)
            (parts["loss"] / k).backward()
        n = labels.shape[0]
        with torch.no_grad():
            correct = (logits.argmax(-1) == labels).sum().item()
            eo = interactions.double().sum().item()
        sums = sums + StepSums(parts["ce"].item() * n, parts["bce"].item() * n, parts["loss"].item() * n,
                               float(correct), float(n), eo)
    return sums


def _total_steps(cfg: TrainConfig, per_epoch: int) -> int:
    if cfg.steps is not None:
        return int(cfg.steps)
    steps = math.floor(cfg.epochs * per_epoch / cfg.accum_steps)
    if steps < 1:
        raise ValueError(f"{cfg.epochs} epoch(s) of {per_epoch} micro-batches make no optimiser step: use --steps")
    return steps


def _compile(model: nn.Module, backend: str) -> None:
    """``torch.compile`` the model's forward in place (``nn.Module.compile``: ``state_dict`` keys unchanged)."""
    import torch._dynamo as dynamo

    known = dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise ValueError(f"--compile {backend!r} is not a torch.compile backend; choose one of {', '.join(known)}")
    model.compile(backend=backend)


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a resumed run starts from)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = []
    for ln in lines:
        try:
            if json.loads(ln).get("step", 0) <= step:
                kept.append(ln)
        except json.JSONDecodeError:
            continue  # a line cut short by the kill
    with atomic_write(path) as tmp:
        tmp.write_text("".join(ln + "\n" for ln in kept))


@dataclass
class Prepared:
    """What a run trains: the model (not yet on its device), the data set with its fields, and their shapes.

    Attributes:
        model: the model of the run's kind, freshly built (from ``weights`` where given).
        dataset: the training images, carrying their ground-truth fields for the kinds that read a store.
        store: that ground-truth store, ``None`` for the plain ViT.
        grid: the model's patch grid.
        image_size: the input size in pixels.
        num_classes: the data set's classes (the size of the classifier).
    """

    model: nn.Module
    dataset: Any
    store: Any | None
    grid: Grid
    image_size: int
    num_classes: int


def _prepare(cfg: TrainConfig) -> Prepared:
    """Model and data (with fields) of a run."""
    # a throw-away instance tells the input size and the model's own normalisation
    probe = build_model(cfg.model, VIT, image_size=cfg.image_size, model_kwargs=cfg.model_kwargs)
    image_size = model_image_size(probe)
    dataset = open_dataset(cfg.data, cfg.split, image_size, cfg.data_root, model_normalisation(probe),
                           **cfg.data_kwargs)
    del probe
    num_classes = getattr(dataset, "num_classes", None)
    if num_classes is None:
        raise ValueError(f"data set {cfg.data!r} does not say its number of classes (num_classes)")
    asked = cfg.model_kwargs.get("num_classes")
    if asked is not None and int(asked) != int(num_classes):
        raise ValueError(f"--model-kwargs asks for {asked} classes but data set {cfg.data!r} has {num_classes}")
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model, cfg.kind, num_classes=num_classes, image_size=image_size, weights=cfg.weights,
        model_kwargs=cfg.model_kwargs,
    )
    grid = model_grid(model)
    store = None
    if cfg.kind.uses_groundtruth:
        dataset, store = attach_fields(dataset, cfg.groundtruth, grid, dip=cfg.kind.dip_fields)
    return Prepared(model=model, dataset=dataset, store=store, grid=grid, image_size=image_size,
                    num_classes=int(num_classes))


def _store_accuracy(store: Any) -> float | None:
    """Top-1 accuracy of the ViT that built the store, on the store's images (``None`` without logits)."""
    ok = store.valid & (store.predicted >= 0)
    return float((store.predicted[ok] == store.labels[ok]).mean()) if ok.any() else None


def _run_info(cfg: TrainConfig, prep: Prepared, step: int) -> dict[str, Any]:
    """The contents of a finished run's ``run.json`` (besides its format)."""
    store = prep.store
    gt = None
    if store is not None:
        gt = {"path": str(Path(cfg.groundtruth).resolve()), "alpha": float(store.alpha), "beta": float(store.beta),
              "model": store.model_name, "model_accuracy": _store_accuracy(store),
              "expected_interactions": store.expected_interactions(dip=cfg.kind.dip_fields)}
    return {
        "model": cfg.model, "kind": cfg.kind.name, "winft_mode": cfg.kind.winft_mode, "model_kwargs": cfg.model_kwargs,
        "num_classes": prep.num_classes, "image_size": prep.image_size,
        "grid": [prep.grid.height, prep.grid.width], "num_patches": prep.grid.n,
        "data": cfg.data, "data_kwargs": cfg.data_kwargs, "groundtruth": gt, "steps": step, "config": cfg.to_dict(),
    }


def _inputs_fingerprint(cfg: TrainConfig, prep: Prepared) -> dict[str, Any]:
    """Content hashes of what a run reads besides its settings: starting weights, data set, ground truth."""
    from ..utils.fingerprint import dataset_fingerprint

    ds = prep.dataset
    store = prep.store
    return {
        "weights": file_hash(cfg.weights) if cfg.weights else None,
        "data": dataset_fingerprint(getattr(ds, "dataset", ds)),
        "groundtruth": None if store is None else {k: store.manifest.get(k) for k in ("fingerprint", "weights",
                                                                                       "alpha", "beta")},
    }


def _lock_run(out: Path, env: DistEnv) -> FolderLock | None:
    """Rank 0 locks the run folder (removing temporaries of killed writers); every rank fails alike when it
    cannot."""
    lock, error = None, None
    if env.is_main:
        try:
            lock = FolderLock(out).acquire()
        except (FolderLockedError, OSError) as e:
            error = e
    said = all_gather_objects(one_line(error) if error is not None else None, env)[0]
    if error is not None:
        raise error
    if said is not None:
        raise FolderLockedError(said)
    return lock


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one model as ``cfg`` says; returns ``{"step", "out", "last"}`` (``last``: the final log line).

    Under ``torchrun`` every process calls this; rank 0 writes the files. Set-up errors (bad
    store, missing files) raise before any training.
    """
    with distributed_env(cfg.device) as env:
        return _train(cfg, env)


@isolated_rng()  # the run seeds the global generators; the caller gets its own states back
def _train(cfg: TrainConfig, env: DistEnv) -> dict[str, Any]:
    """:func:`_train_unlocked` holding the run folder's lock (rank 0): a second writer fails at once."""
    lock = _lock_run(Path(cfg.out), env)
    try:
        return _train_unlocked(cfg, env)
    finally:
        if lock is not None:
            lock.release()


@dataclass
class _Run:
    """A run in training on one process: its settings, model, optimiser and where it stands.

    ``step`` is the optimiser steps taken, ``sums`` this process's sums over the log interval in progress
    (both restored by ``--resume``).
    """

    cfg: TrainConfig
    env: DistEnv
    prep: Prepared
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    per_epoch: int
    total: int
    inputs: dict[str, Any]
    step: int = 0
    sums: StepSums = field(default_factory=StepSums)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def save_checkpoint(self) -> None:
        """Every process's RNG and log sums, and on rank 0 the checkpoint at :attr:`step`."""
        rngs = all_gather_objects(rng_state(), self.env)
        partial = all_gather_objects(self.sums.as_tensor(), self.env)  # the log interval in progress, per process
        if self.env.is_main:
            at, accum = self.step, self.cfg.accum_steps
            save_checkpoint(self.out / CHECKPOINT, {
                "config": self.cfg.to_dict(), "inputs": self.inputs, "step": at, "world_size": self.env.world_size,
                "model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rngs, "log_sums": partial,
                "data": {"micro_batch": at * accum, "epoch": at * accum // self.per_epoch},
            })
        self.env.barrier()

    def log_line(self, lr: float, seconds: float) -> dict[str, Any]:
        """The log line of the interval ending at :attr:`step` (its sums over every process), then a new interval."""
        tot = StepSums.from_tensor(all_reduce_sum(self.sums.as_tensor(), self.env))
        count = max(tot.images, 1.0)
        line = {
            "step": self.step, "epoch": round((self.step * self.cfg.accum_steps) / self.per_epoch, 4),
            "loss": tot.loss / count, "ce": tot.ce / count, "bce": tot.bce / count,
            "accuracy": tot.correct / count, "lr": lr, "eo": tot.interactions / count,
            "images": int(tot.images),
            "images_per_s": tot.images / max(seconds, 1e-9),
        }
        if not math.isfinite(line["loss"]):
            raise FloatingPointError(f"the loss became {line['loss']} at step {self.step}: lower --lr")
        if self.env.is_main:
            with open(self.out / LOG_FILE, "a") as fh:
                fh.write(json.dumps(line) + "\n")
        self.sums = StepSums()
        return line


def _start(cfg: TrainConfig, env: DistEnv) -> _Run:
    """Prepare a run on this process: model, data, optimiser and scheduler, from step 0 or its checkpoint."""
    out = Path(cfg.out)
    if (out / CHECKPOINT).exists() and not cfg.resume:
        raise ValueError(f"{out} already holds a run ({CHECKPOINT}): pass --resume to continue it, or another --out")
    prep = _prepare(cfg)
    model: nn.Module = prep.model.to(env.device)
    per_epoch = batches_per_epoch(len(prep.dataset), cfg.batch_size, env.world_size)
    if per_epoch < 1:
        raise ValueError(
            f"a data set of {len(prep.dataset)} images fills no batch of {cfg.batch_size} on each of "
            f"{env.world_size} process(es): use a smaller --batch-size or more data"
        )
    total = _total_steps(cfg, per_epoch)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, total, cfg.warmup_steps, cfg.min_lr)
    run = _Run(cfg, env, prep, model, optimizer, scheduler, per_epoch, total, _inputs_fingerprint(cfg, prep))
    if cfg.resume and (out / CHECKPOINT).exists():
        _resume(run)
    else:
        if cfg.resume and env.is_main:
            logger.warning("no checkpoint in %s: starting the run from step 0", out)
        torch.manual_seed(cfg.seed + env.rank)
        np.random.seed((cfg.seed + env.rank) % 2**32)
    if cfg.compile:
        _compile(run.model, cfg.compile)
    if env.distributed:
        run.model = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    return run


def _resume(run: _Run) -> None:
    """Continue ``run`` from its checkpoint, which must have been made with the same settings and inputs."""
    cfg, env, out = run.cfg, run.env, run.out
    state = load_checkpoint(out / CHECKPOINT)
    diff = TrainConfig.from_dict(state["config"]).mismatches(cfg)
    before = state.get("inputs") or {}
    diff += [f"{k}: content {before[k]!r} then, {run.inputs[k]!r} now" for k in run.inputs
             if k in before and before[k] != run.inputs[k]]
    if diff:
        raise ValueError(f"--resume with other settings than the run in {out}: " + "; ".join(diff))
    if state["world_size"] != env.world_size:
        raise ValueError(
            f"the run in {out} used {state['world_size']} process(es); resume it with the same number "
            f"(now {env.world_size}) so the data order continues exactly"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.step = int(state["step"])
    set_rng_state(state["rng"][env.rank])
    partial = state.get("log_sums", [None] * env.world_size)[env.rank]
    if partial is not None:
        run.sums = StepSums.from_tensor(partial)
    if env.is_main:
        _trim_log(out / LOG_FILE, run.step)
        logger.info("resuming %s at step %d of %d", out, run.step, run.total)


def _announce(run: _Run) -> None:
    """Rank 0: the run folder made, the ground truth's source logged, a log of a run killed before its first
    checkpoint emptied."""
    if not run.env.is_main:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    store = run.prep.store
    if store is not None:
        acc = _store_accuracy(store)
        note = f", its top-1 on these images {acc:.1%}" if acc is not None else ""
        logger.info("fields from %s (alpha %s, beta %s%s); docs/spec.md §7 wants a well-trained ViT",
                    store.model_name, store.alpha, store.beta, note)
    if run.step == 0:
        _trim_log(run.out / LOG_FILE, 0)  # a run killed before its first checkpoint starts over


def _train_steps(run: _Run) -> dict[str, Any]:
    """Take the run's optimiser steps up to its end (or ``stop_after_steps``), logging and checkpointing;
    returns the last log line."""
    cfg, env = run.cfg, run.env
    stop_at = run.total if cfg.stop_after_steps is None else max(run.step, min(run.total, cfg.stop_after_steps))
    loader = make_loader(
        run.prep.dataset, cfg.batch_size, cfg.seed, rank=env.rank, world_size=env.world_size,
        start=run.step * cfg.accum_steps, stop=stop_at * cfg.accum_steps, workers=cfg.workers,
        pin_memory=env.device.type == "cuda",
    )
    bar = tqdm(total=run.total, initial=run.step, unit="step", desc=f"train {cfg.kind.name}", file=sys.stderr,
               disable=not (cfg.progress and env.is_main), dynamic_ncols=True)
    amp = cfg.amp if cfg.amp is not None else env.device.type == "cuda"
    autocast = (lambda: torch.autocast(env.device.type, dtype=torch.bfloat16)) if amp else nullcontext
    last: dict[str, Any] = {}
    tick = time.perf_counter()
    run.model.train()
    for group in _grouped(loader, cfg.accum_steps):
        group = [b for b in group if b is not None]  # None: every image of the micro-batch was unreadable
        if not group and env.distributed:
            raise ValueError(
                f"every image of the micro-batches of step {run.step + 1} on rank {env.rank} was unreadable")
        run.sums = run.sums + accumulate_gradients(
            run.model, cfg.kind, [split_batch(b, env.device) for b in group], run.prep.grid.n, cfg.lambda_ce,
            cfg.lambda_bce, autocast=autocast, no_sync=env.distributed,
        )
        lr = run.optimizer.param_groups[0]["lr"]
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.scheduler.step()
        run.step += 1
        bar.update(1)
        if run.step % cfg.log_every == 0 or run.step == stop_at:
            now = time.perf_counter()
            last = run.log_line(lr, now - tick)
            if env.is_main:
                bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{last['accuracy']:.2f}", lr=f"{lr:.2e}",
                                img_s=f"{last['images_per_s']:.0f}")
            tick = now
        if cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0 and run.step < run.total:
            run.save_checkpoint()
    bar.close()
    return last


def _train_unlocked(cfg: TrainConfig, env: DistEnv) -> dict[str, Any]:
    """Train (or continue) the run of ``cfg``: set up, step, and at the end export its model and ``run.json``."""
    run = _start(cfg, env)
    _announce(run)
    last = _train_steps(run)
    if run.step < run.total:
        return {"step": run.step, "out": str(run.out), "last": last, "finished": False}
    run.save_checkpoint()
    if env.is_main:
        export_run(run.out, run.model, _run_info(cfg, run.prep, run.step))
    env.barrier()
    return {"step": run.step, "out": str(run.out), "last": last, "finished": True}
