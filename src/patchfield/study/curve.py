"""Training with a validation curve: the run is trained in equal segments, each checkpoint evaluated.

The training loop resumes exactly (model, optimiser, scheduler, RNG and data order from its
checkpoint), so a run trained in ``points`` segments with ``stop_after_steps`` follows the same
trajectory as one trained at once. After each segment the checkpoint's weights are scored on the
first ``count`` validation images; the curve is kept in ``curve.json`` beside the run, so a killed
run continues at the first point it lacks. :func:`final_gain` is the well-trained criterion:
top-1 at the end minus top-1 at 80% of the schedule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..utils.io import write_json_atomic

__all__ = ["CURVE_FILE", "curve_evaluator", "final_gain", "train_with_curve"]

CURVE_FILE = "curve.json"


def curve_evaluator(tc: Any, val_kwargs: dict[str, Any], val_store: str | Path | None,
                    count: int | None, batch_size: int = 256) -> Callable[[dict[str, torch.Tensor]], float]:
    """A function scoring a state dict of ``tc``'s model: top-1 (fraction) on the first ``count`` val images
    (``None``: all of them).

    The AWD kinds read their validation fields from ``val_store`` (a store of the same val images).
    """
    from torch.utils.data import DataLoader, Subset

    from ..data.registry import collate_skip
    from ..introspect import model_grid
    from ..loading import build_model
    from ..training.evaluation import evaluate
    from ..training.sources import attach_fields, model_image_size, model_normalisation, open_dataset

    with torch.random.fork_rng(devices=[]):  # building a model draws random weights; leave the caller's RNG be
        model = build_model(tc.model, tc.kind, model_kwargs=tc.model_kwargs)
    dataset = open_dataset(tc.data, "val", model_image_size(model), tc.data_root, model_normalisation(model),
                           **val_kwargs)
    if tc.kind in ("awd", "awd-dip"):
        if val_store is None:
            raise ValueError(f"a {tc.kind!r} run needs the fields of its validation images (a val store)")
        dataset, _ = attach_fields(dataset, val_store, model_grid(model), dip=tc.kind == "awd-dip")
    if count is not None and int(count) < len(dataset):
        dataset = Subset(dataset, range(int(count)))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_skip)

    def top1(state: dict[str, torch.Tensor]) -> float:
        model.load_state_dict(state)
        return float(evaluate(model, loader, tc.kind, progress=False)["top1"])

    return top1


def train_with_curve(tc: Any, points: int, score: Callable[[dict[str, torch.Tensor]], float],
                     score_all: Callable[[dict[str, torch.Tensor]], float] | None = None) -> list[dict[str, float]]:
    """Train ``tc`` (a :class:`patchfield.training.TrainConfig` with ``steps``) in ``points`` segments.

    Returns the curve ``[{"step", "top1"}, ...]`` (``top1`` a fraction, by ``score``), one point per segment
    end; the last is the finished run. The point at 80% of the schedule also holds ``top1_all`` (by
    ``score_all``, on all validation images), the start of :func:`final_gain`. ``tc.steps`` must be a multiple
    of ``points``.
    """
    from ..training import train
    from ..training.checkpoint import CHECKPOINT, load_checkpoint

    steps, points = int(tc.steps), int(points)
    if points < 1 or steps % points:
        raise ValueError(f"the steps ({steps}) must be a multiple of the curve's points ({points})")
    seg = steps // points
    out = Path(tc.out)
    path = out / CURVE_FILE
    curve = json.loads(path.read_text()) if path.is_file() else []
    done = {int(c["step"]) for c in curve}
    for k in range(1, points + 1):
        at = k * seg
        if at in done:
            continue
        train(replace(tc, stop_after_steps=at, checkpoint_every=seg, resume=(out / CHECKPOINT).is_file()))
        state = load_checkpoint(out / CHECKPOINT)
        if int(state["step"]) != at:
            raise ValueError(f"{out}: its checkpoint is at step {state['step']}, the curve expects {at}; remove the "
                             "folder to train this run again")
        point = {"step": at, "top1": score(state["model"])}
        if score_all is not None and 5 * at == 4 * steps:
            point["top1_all"] = score_all(state["model"])
        curve.append(point)
        write_json_atomic(path, curve)
    return sorted(curve, key=lambda c: c["step"])


def final_gain(curve: list[dict[str, float]], end_all: float | None = None) -> float:
    """Top-1 points (percent) gained over the last 20% of the schedule: end minus the point at 80%.

    With ``end_all`` (the finished run's top-1 on all validation images) and a ``top1_all`` at 80%, both ends
    are on all images; else both are the curve's own.

    >>> final_gain([{"step": s, "top1": t} for s, t in ((2, .5), (4, .6), (6, .7), (8, .80), (10, .804))])
    0.4
    >>> final_gain([{"step": 4, "top1": .8, "top1_all": .79}, {"step": 5, "top1": .81}], end_all=.8)
    1.0
    """
    end = max(int(c["step"]) for c in curve)
    at = {int(c["step"]): c for c in curve}
    mark = round(0.8 * end)
    if mark not in at:
        raise ValueError(f"the curve has no point at 80% of the schedule (step {mark}); use a multiple of 5 points")
    if end_all is not None and "top1_all" in at[mark]:
        return round(100.0 * (float(end_all) - float(at[mark]["top1_all"])), 6)
    return round(100.0 * (float(at[end]["top1"]) - float(at[mark]["top1"])), 6)
