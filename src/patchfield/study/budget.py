"""The reproduction study's budget: a training step of each kind timed now, times the plan.

:func:`estimate_budget` is what a session of the study prints before it starts (and records in
``results.json``); :func:`step_key` names its step times.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from ..kinds import Kind
from .config import MODEL, StudyConfig, all_seeds, study_rows, train_steps

__all__ = ["estimate_budget", "log_budget", "step_key", "step_seconds"]

logger = logging.getLogger(__name__)


def step_seconds(cfg: StudyConfig, kind: Kind, patch: int, model_kwargs: dict[str, Any],
                  repeats: int = 3) -> tuple[float, float]:
    """``(CPU seconds, wall seconds)`` of one training step of a ``kind`` model at ``patch`` on one thread, measured
    now (the fastest of ``repeats``): the training loop's own forward, loss and backward
    (:func:`patchfield.training.loop.accumulate_gradients`) and an AdamW step, on random images and a random
    window mask of half the pairs. CPU time stands in for an idle core; wall time includes the current load."""
    from ..training.build import build_model
    from ..training.loop import accumulate_gradients

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(MODEL, kind, model_kwargs={**model_kwargs, "num_classes": 10})
            size, n = model.patch_embed.img_size[0], model.patch_embed.num_patches
            b = cfg.batch_size
            x, y = torch.randn(b, 3, size, size), torch.randint(0, 10, (b,))
            mask = (torch.rand(b, n, n) < 0.5) | torch.eye(n, dtype=torch.bool)
            dropped = torch.rand(b, n) < 0.2
        batch = [(x, y, mask if kind.uses_groundtruth else None, dropped if kind.drops_patches else None)]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        times = []
        for _ in range(repeats + 1):
            c0, w0 = time.process_time(), time.perf_counter()
            accumulate_gradients(model, kind, batch)
            opt.step()
            opt.zero_grad()
            times.append((time.process_time() - c0, time.perf_counter() - w0))
        return min(t[0] for t in times[1:]), min(t[1] for t in times[1:])
    finally:
        torch.set_num_threads(threads)


def step_key(kind: Kind, patch: int) -> str:
    """The key of ``estimate_budget``'s step times: ``"<kind>/p<patch>"``."""
    return f"{kind.name}/p{patch}"


def estimate_budget(cfg: StudyConfig, pretrained: dict[int, dict[str, Any]], datasets: list[str],
                    jobs: int) -> dict[str, Any]:
    """Runs × steps × a step time measured now for each (kind, patch size) the study trains, on ``min(jobs, 2)``
    processes, +30% for the evaluations, stores and claims: ``hours`` from CPU time (idle cores),
    ``hours_at_current_load`` from wall time. ``step_seconds`` keys are ``"<kind>/p<patch>"``.

    With two processes every step is timed in two processes at once (the slower of the two), as the study runs
    them: two training processes share the memory bandwidth and caches, and at the 14×14 grid each of their
    steps took 1.2-1.5× a step timed alone."""
    plan = [(row, train_steps(cfg, dataset) * row.schedule) for dataset in datasets for seed in all_seeds(cfg, dataset)
            for row in study_rows(cfg, dataset, seed)]
    pairs = sorted({(row.kind, row.patch) for row, _ in plan}, key=lambda kp: (kp[0].name, kp[1]))
    procs = max(1, min(jobs, 2))
    measured = _measure(cfg, [(k, p, pretrained[p]["model_kwargs"]) for k, p in pairs], procs)
    cpu = sum(steps * measured[row.kind, row.patch][0] for row, steps in plan)
    wall = sum(steps * measured[row.kind, row.patch][1] for row, steps in plan)
    return {"runs": len(plan), "steps": sum(steps for _, steps in plan),
            "step_seconds": {step_key(k, p): round(m[0], 4) for (k, p), m in measured.items()},
            "step_seconds_wall": {step_key(k, p): round(m[1], 4) for (k, p), m in measured.items()},
            "train_seconds_one_process": round(cpu, 1), "hours": round(1.3 * cpu / procs / 3600.0, 2),
            "hours_at_current_load": round(1.3 * wall / procs / 3600.0, 2), "jobs": jobs}


def _measure_all(cfg: StudyConfig, pairs: list[tuple[Kind, int, dict[str, Any]]]) -> list[tuple[float, float]]:
    """:func:`step_seconds` of every ``(kind, patch, model_kwargs)`` in turn."""
    return [step_seconds(cfg, k, p, kw) for k, p, kw in pairs]


def _measure(cfg: StudyConfig, pairs: list[tuple[Kind, int, dict[str, Any]]],
             procs: int) -> dict[tuple[Kind, int], tuple[float, float]]:
    """:func:`step_seconds` of every ``(kind, patch, model_kwargs)``: in this process, or with ``procs`` > 1 in
    that many worker processes at once, each timing every pair in the same order (each pair's slowest)."""
    if procs == 1:
        times = [_measure_all(cfg, pairs)]
    else:
        from ..utils.processes import worker_pool

        with worker_pool(procs) as pool:
            times = pool.starmap(_measure_all, [(cfg, pairs)] * procs, chunksize=1)
    return {(k, p): (max(t[i][0] for t in times), max(t[i][1] for t in times))
            for i, (k, p, _) in enumerate(pairs)}


def log_budget(budget: dict[str, Any], jobs: int) -> None:
    """Say the study's plan and the time it will take (a warning past the study's 5 hours)."""
    logger.info(
        "[reproduce] %d runs, %s steps; a step takes %s on one thread: about %.1f h on %d idle core(s), %.1f h at "
        "the current load (evaluation and stores +30%%); finished runs are skipped", budget["runs"],
        f"{budget['steps']:,}", ", ".join(f"{c:.3f} s CPU ({budget['step_seconds_wall'][k]:.3f} s wall) for {k}"
                                          for k, c in budget["step_seconds"].items()),
        budget["hours"], min(jobs, 2), budget["hours_at_current_load"])
    if budget["hours"] > 5.0:
        logger.warning("[reproduce] this is more than the study's 5 hours: lower --steps / --real-steps, or expect a "
                       "longer run (it can be stopped and resumed)")
