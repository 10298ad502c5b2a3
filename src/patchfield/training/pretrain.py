"""The pretrained start: one tiny ViT per patch size, trained on generated radial contours.

The paper starts every model from ImageNet-21k weights. Here the source is generated, never
downloaded, and is not a target: formula-driven supervised pretraining on RCDB-style radial contours
(:class:`patchfield.data.formula.FormulaContours`; why that source is in its docstring). Each patch
size gets its own ViT with the study's tiny configuration (:data:`TINY_VIT`, 32×32 inputs), trained by
the one training loop (:func:`patchfield.training.train`), so a pretraining is resumable exactly like
any run: a killed ``patchfield pretrain`` continues from its last checkpoint, and a finished one is
skipped.

A finished folder ``<root>/<name>/`` (``name`` = ``formula-p4``, ``formula-p8``) holds
``model.safetensors`` and ``run.json``: the run description :func:`patchfield.loading.load_run`
reads, plus the record ``name, patch, source, source_top1, source_eval, train_seconds, steps,
images, seed``. ``source_top1`` (a fraction) is the top-1 on held-out images of the source (its
``val`` split: other images of the same classes; ``source_eval`` says which, and holds the top-1 of
their first ``check_images`` for :func:`check_pretrained`); ``train_seconds`` is the time of the optimiser
steps kept (summed from ``log.jsonl``, so a resumed run counts each kept step once). The
resumable ``checkpoint.pt`` is deleted once the record is written; ``log.jsonl`` (the training
curve) stays.

Fine-tuning starts from ``model.safetensors``: ``patchfield train --weights <folder>/model.safetensors``
with the same ``--model-kwargs`` (:func:`pretrained_model_kwargs`); the classifier head, of the
source's 100 classes, is re-initialised for a target with another number of classes (every target
here: 4 shapes, 10 garments).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, one_line
from ..runs import MODEL_FILE, RUN_FILE, read_run_info
from ..utils.io import write_json_atomic

__all__ = [
    "MODEL",
    "NUMERIC_TOLERANCE",
    "PRETRAINED_ROOT",
    "PretrainConfig",
    "QUICK",
    "TINY_VIT",
    "check_pretrained",
    "find_pretrained",
    "pretrain",
    "pretrain_one",
    "pretrained_model_kwargs",
    "pretrained_weights",
    "source_accuracy",
]

logger = logging.getLogger(__name__)

#: Where ``patchfield pretrain`` writes, and where the shipped checkpoints live.
PRETRAINED_ROOT = Path(__file__).resolve().parents[1] / "assets" / "pretrained"

#: A timm name; the tiny configuration comes in the model kwargs (as in the reproduction study).
MODEL = "vit_tiny_patch16_224"

#: The reproduction study's tiny ViT (its ``StudyConfig``: width 64, 4 layers, 4 heads, MLP ratio 2).
TINY_VIT: dict[str, Any] = {"embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}

#: Settings of :class:`PretrainConfig` that shape a finished pretraining (a rerun must match them).
_SHAPING = ("source", "num_classes", "source_seed", "train_images", "eval_images", "image_size", "model_kwargs",
            "steps", "batch_size", "optimizer", "lr", "warmup_steps", "weight_decay", "seed")

_RECORD_KEYS = ("name", "patch", "source", "source_top1", "train_seconds", "steps", "images", "seed")


@dataclass(frozen=True)
class PretrainConfig:
    """Source, model and schedule of the pretraining; the defaults are the committed run (``make pretrain``).

    Attributes:
        root: folder of the runs, one subfolder per patch size (``None``: :data:`PRETRAINED_ROOT`).
        patches: patch sizes, one ViT each.
        source: the generated data set (``formula``).
        num_classes: classes of the source.
        source_seed: seed of the source (its classes and images).
        train_images: images of the source's training split (each index renders one fixed image).
        eval_images: held-out images (the source's ``val`` split) behind ``source_top1``.
        check_images: the first this many of them are also scored alone (``source_eval.check_top1``): the
            quick re-check of a shipped checkpoint (:func:`check_pretrained`).
        image_size: input size in pixels.
        model_kwargs: the ViT's width, depth, heads, MLP ratio (:data:`TINY_VIT`).
        steps: optimiser steps per patch size (20,000 of 128 images: 2.56 million images, about 26 passes
            over the 100,000 training images; on one thread of this 2-core machine about 40 min at patch 8
            and 2 h at patch 4).
        batch_size, optimizer, lr, warmup_steps, weight_decay: the schedule (AdamW with a cosine).
        seed: seed of the initialisation and data order.
        checkpoint_every: steps between resumable checkpoints.
        log_every: steps between log lines.
        progress: show the training loop's progress bar.
        stop_after_steps: stop as if killed after this many steps (tests of resumption).
    """

    root: str | None = None
    patches: tuple[int, ...] = (4, 8)
    source: str = "formula"
    num_classes: int = 100
    source_seed: int = 0
    train_images: int = 100_000
    eval_images: int = 2000
    check_images: int = 300
    image_size: int = 32
    model_kwargs: tuple[tuple[str, Any], ...] = tuple(TINY_VIT.items())
    steps: int = 20_000
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    warmup_steps: int = 500
    weight_decay: float = 0.05
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    progress: bool = True
    stop_after_steps: int | None = None

    def __post_init__(self) -> None:
        if not self.patches or any(int(p) < 1 or self.image_size % int(p) for p in self.patches):
            raise ValueError(f"patch sizes must divide the image size {self.image_size}; got {self.patches}")
        for name in ("num_classes", "train_images", "eval_images", "check_images", "batch_size", "steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def root_dir(self) -> Path:
        return Path(self.root) if self.root is not None else PRETRAINED_ROOT


#: A seconds-long configuration of the same code path (the tests, ``patchfield pretrain --quick``).
QUICK = PretrainConfig(num_classes=10, train_images=256, eval_images=64, check_images=32, steps=4, batch_size=16,
                       warmup_steps=1, checkpoint_every=2, log_every=1, lr=2e-3)


def run_name(source: str, patch: int) -> str:
    """The folder name of a pretrained ViT: ``formula-p4``."""
    return f"{source}-p{int(patch)}"


def pretrained_model_kwargs(cfg: PretrainConfig, patch: int) -> dict[str, Any]:
    """``timm.create_model`` keyword arguments of the pretrained ViT of ``patch`` (no class count)."""
    return {"img_size": cfg.image_size, "patch_size": int(patch), **dict(cfg.model_kwargs)}


def _source_kwargs(cfg: PretrainConfig, count: int) -> dict[str, Any]:
    return {"num_images": int(count), "num_classes": cfg.num_classes, "seed": cfg.source_seed}


def source_accuracy(run_dir: str | Path, num_images: int | None = None, progress: bool = False) -> float:
    """Top-1 (fraction) of a pretrained ViT on the first ``num_images`` held-out images of its source.

    The source's settings (classes, seed, split) are read from the folder's ``run.json``;
    ``num_images`` defaults to the recorded ``source_eval`` count.
    """
    from .evaluation import evaluate_run

    info = read_run_info(run_dir)
    ev = info.get("source_eval")
    if ev is None:
        raise ValueError(f"{run_dir} is not a pretrained run of `patchfield pretrain` (no source_eval in run.json)")
    count = int(num_images if num_images is not None else ev["num_images"])
    kwargs = {**ev["data_kwargs"], "num_images": count}
    result = evaluate_run(run_dir=str(run_dir), data=ev["data"], split=ev["split"], data_kwargs=kwargs,
                          batch_size=256, progress=progress)
    return float(result["top1"])


#: Tolerance for float differences between machines and thread counts (a few borderline logits).
NUMERIC_TOLERANCE = 0.01


def check_pretrained(run_dir: str | Path, num_images: int | None = None) -> dict[str, Any]:
    """Re-measure a pretrained ViT's source top-1 on the first ``num_images`` of its held-out images.

    Two checks, both must hold:

    - against ``source_top1``, measured on all ``N`` held-out images: the first ``n <= N`` differ from it by
      sampling alone, with standard deviation ``sqrt(p(1-p)(1/n - 1/N))``; allowed: 4 of those plus
      :data:`NUMERIC_TOLERANCE` (1 point);
    - when ``n`` is the recorded ``check_images`` (the default), against ``check_top1``, recorded on these very
      images: allowed :data:`NUMERIC_TOLERANCE` alone, so any change of the weights, the generator or the
      evaluation shows.

    Returns:
        ``{"measured", "recorded", "num_images", "tolerance", "recorded_same_images", "ok"}``
        (``recorded_same_images``: ``check_top1``, or ``None`` when ``n`` is not the recorded count).
    """
    info = read_run_info(run_dir)
    ev = info.get("source_eval") or {}
    if "source_top1" not in info or "num_images" not in ev:
        raise ValueError(f"{run_dir} holds no recorded pretraining (source_top1, source_eval in run.json)")
    recorded, total = float(info["source_top1"]), int(ev["num_images"])
    n = min(int(num_images if num_images is not None else ev.get("check_images", total)), total)
    measured = source_accuracy(run_dir, n)
    sd = math.sqrt(max(recorded * (1 - recorded), 0.0) * max(1 / n - 1 / total, 0.0))
    tolerance = 4 * sd + NUMERIC_TOLERANCE
    ok = abs(measured - recorded) <= tolerance
    same = float(ev["check_top1"]) if ev.get("check_images") == n and "check_top1" in ev else None
    if same is not None:
        ok = ok and abs(measured - same) <= NUMERIC_TOLERANCE
    return {"measured": measured, "recorded": recorded, "num_images": n, "tolerance": tolerance,
            "recorded_same_images": same, "ok": ok}


def find_pretrained(root: str | Path | None = None) -> list[Path]:
    """Folders under ``root`` (default :data:`PRETRAINED_ROOT`) holding a finished, recorded pretraining."""
    base = Path(root) if root is not None else PRETRAINED_ROOT
    if not base.is_dir():
        return []
    found = []
    for run_file in sorted(base.glob(f"*/{RUN_FILE}")):
        if not (run_file.parent / MODEL_FILE).is_file():
            continue
        try:
            info = read_run_info(run_file.parent)
        except ValueError as e:  # a corrupt run.json (the message names it)
            raise InputError(f"{one_line(e)}; or remove {run_file.parent} to pretrain it again") from e
        if "source_top1" in info:
            found.append(run_file.parent)
    return found


def pretrained_weights(patch: int, root: str | Path | None = None, source: str = "formula") -> Path:
    """``model.safetensors`` of the pretrained ViT of ``patch`` (the ``--weights`` of a fine-tune).

    Raises:
        FileNotFoundError: no finished pretraining of that patch size under ``root``.
    """
    folder = (Path(root) if root is not None else PRETRAINED_ROOT) / run_name(source, patch)
    if folder not in find_pretrained(folder.parent):
        raise FileNotFoundError(
            f"no pretrained ViT for patch {patch} in {folder}: run `make pretrain` (or `patchfield pretrain`)"
        )
    return folder / MODEL_FILE


def pretrain_one(cfg: PretrainConfig, patch: int) -> dict[str, Any]:
    """Pretrain (or resume, or skip when finished) the ViT of one patch size; returns its record.

    Returns the record (see the module docstring) with ``"out"`` (the folder) and ``"finished"``;
    a run stopped by ``stop_after_steps`` returns ``{"name", "out", "finished": False, "step"}``.
    """
    from ..kinds import VIT
    from .checkpoint import CHECKPOINT
    from .config import TrainConfig
    from .loop import LOG_FILE, logged_time, train

    name = run_name(cfg.source, patch)
    out = cfg.root_dir() / name
    steps = int(cfg.steps)
    if out.is_dir() and out in find_pretrained(out.parent):
        info = read_run_info(out)
        done = info.get("pretrain", {})
        differ = [f"{k} {done.get(k)!r} != {v!r}" for k, v in asdict(cfg).items()
                  if k in _SHAPING and json.dumps(done.get(k)) != json.dumps(v)]
        if differ:
            raise ValueError(
                f"{out} holds a finished pretraining with other settings ({'; '.join(differ)}): remove the folder "
                "to train again, or choose another --out"
            )
        from ..loading import load_run

        try:  # finished means its weights load too: an empty or truncated model.safetensors is no pretraining
            load_run(out)
        except InputError as e:
            raise InputError(f"{out} is recorded as a finished pretraining but cannot be loaded: remove the folder "
                             f"to pretrain it again ({one_line(e)})") from e
        return {**{k: info[k] for k in _RECORD_KEYS}, "out": str(out), "finished": True}
    tc = TrainConfig(
        model=MODEL, kind=VIT, out=str(out), data=cfg.source,
        data_kwargs=_source_kwargs(cfg, cfg.train_images),
        model_kwargs={**pretrained_model_kwargs(cfg, patch), "num_classes": cfg.num_classes},
        steps=steps, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, seed=cfg.seed,
        resume=(out / CHECKPOINT).is_file(), stop_after_steps=cfg.stop_after_steps, progress=cfg.progress,
    )
    result = train(tc)
    if not result["finished"]:
        return {"name": name, "out": str(out), "finished": False, "step": result["step"]}
    check = min(cfg.check_images, cfg.eval_images)
    ev = {"data": cfg.source, "split": "val", "data_kwargs": _source_kwargs(cfg, cfg.eval_images),
          "num_images": cfg.eval_images, "check_images": check}
    info = read_run_info(out)
    info["source_eval"] = ev
    write_json_atomic(out / RUN_FILE, info)  # source_accuracy reads the held-out settings from here
    top1 = source_accuracy(out, progress=cfg.progress)
    info["source_eval"] = {**ev, "check_top1": source_accuracy(out, check)}
    record = {"name": name, "patch": int(patch), "source": cfg.source, "source_top1": top1,
              "train_seconds": round(logged_time(out / LOG_FILE)[0], 1), "steps": int(result["step"]),
              "images": int(result["step"]) * cfg.batch_size, "seed": cfg.seed}
    write_json_atomic(out / RUN_FILE, {**info, **record, "pretrain": asdict(cfg)})
    (out / CHECKPOINT).unlink(missing_ok=True)  # only the final weights are kept (and shipped)
    return {**record, "out": str(out), "finished": True}


def _pretrain_in_process(cfg: PretrainConfig, patch: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return pretrain_one(cfg, patch)


def pretrain(cfg: PretrainConfig, jobs: int = 1) -> list[dict[str, Any]]:
    """Pretrain every patch size of ``cfg`` (resuming unfinished runs, skipping finished ones).

    Args:
        cfg: source, model and schedule.
        jobs: patch sizes trained at once in separate processes with one thread each (``1``: one after
            the other in this process). With several jobs only the first patch size shows a progress bar.

    Returns:
        One record per patch size (see :func:`pretrain_one`).
    """
    if int(jobs) < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    t0 = time.perf_counter()
    if jobs > 1 and len(cfg.patches) > 1:
        from ..utils.processes import worker_pool

        tasks = [(replace(cfg, progress=cfg.progress and i == 0), p, 1) for i, p in enumerate(cfg.patches)]
        with worker_pool(min(int(jobs), len(tasks))) as pool:
            records = pool.starmap(_pretrain_in_process, tasks)
    else:
        records = [pretrain_one(cfg, p) for p in cfg.patches]
    logger.info("[pretrain] %d patch size(s) in %.0fs", len(records), time.perf_counter() - t0)
    return records
