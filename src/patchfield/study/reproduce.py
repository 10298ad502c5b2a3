"""The reproduction study: the paper's protocol from a pretrained start, at a scale a 2-core CPU runs (issue 10).

1. Every row starts from the pretrained ViT of its patch size (:func:`patchfield.training.pretrain.pretrained_weights`,
   ``make pretrain``; the quick configuration pretrains its own in seconds). The baseline ViT is
   fine-tuned on all training images (Fashion-MNIST: the 60,000, scored on its 10,000 test images; the
   embedded set: ``train_images``/``val_images``).
2. From each seed's fine-tuned baseline, every image's windows and DIP sets (ground-truth stores, SPEC §6).
3. AWD per ``alpha`` (Table 1), AWD ``dip_alpha`` + DIP per ``beta`` (Table 2), WinfT in both modes at both
   patch sizes (Table 3), from the pretrained start with the baseline's budget and data order (same seed).
   The headline rows (:data:`patchfield.study.rows.HEADLINE`) also run ``headline_seeds`` and, from random
   weights, the from-scratch arm (``scratch_seeds``; its AWD and WinfT rows use the fine-tuned baseline's fields,
   so start is the only difference).
4. Every run records its validation curve (:mod:`.curve`); the analysis claims are measured per seed on the
   fine-tuned baseline (:mod:`patchfield.claims`) and combined with seeds as the unit (:mod:`.stats`).

Every finished run leaves ``eval.json`` in its folder with the settings it was run with; a rerun skips
it, so a killed study resumes where it stopped (also across sessions), and a folder made with other settings
is refused. :func:`patchfield.study.report.write_report` renders ``docs/reproduction.md`` and ``.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, one_line
from ..utils.io import write_json_atomic
from .report import FORMAT, write_report
from .rows import HEADLINE, Row, not_run_rows, rows_for

__all__ = ["FORMAT", "QUICK", "StudyConfig", "config_with", "estimate_budget", "run_folder", "run_study",
           "study_rows", "study_status"]

@dataclass(frozen=True)
class StudyConfig:
    """Scale and protocol of the study; the defaults are the committed run (``make reproduce``).

    The budget (issue 10: at most 5 hours on the 2-core machine, after pretraining). A training step of
    128 images of the tiny ViT on one thread took 0.25-0.41 s of CPU time at patch 4 and 0.065-0.10 s at
    patch 8 on this machine (``time.process_time``, measured on several days; :func:`estimate_budget` measures it
    again at the start of every session); with the validation points, 0.49 s a step at patch 4 on two busy
    cores. The schedules are the shortest whose baselines pass the well-trained check in pilots: on
    Fashion-MNIST 1,500 steps left one of two seeds gaining 0.65 point over its last 20% (the first session
    of this study, set aside), on the embedded set 400 steps gained 0.4 on 1,000 validation images (noise
    about ±0.5 there, hence 2,000). The defaults run, per data set:

    - embedded (``steps`` 500 of 128 = 8 epochs of 8,000 images): patch 4: 11 rows × 3 seeds + 3 headline
      rows × 2 more seeds = 39 runs, scratch arm 3 rows × 3 seeds = 9; patch 8: 3 rows × 3 seeds = 9:
      57 runs, 28,500 steps;
    - Fashion-MNIST (``real_steps`` 2,000 of 128 = 4.3 epochs of 60,000 images): patch 4: 5 rows × 3 seeds,
      patch 8: 3 rows × 3 seeds: 24 runs, 48,000 steps. The headline rows' extra seeds
      (``real_headline_seeds``) and the from-scratch arm (``real_scratch_seeds``) are left out on real sets:
      their 12 runs of 2,000 steps would add 1.6 hours on two processes, past the 5 hours.

    A step costs more for the windowed kinds: one thread, CPU time, at the committed run's last start: ViT 0.27 s,
    AWD 0.33 s, AWD+DIP 0.34 s, WinfT 0.37-0.44 s at patch 4, 0.08-0.09 s at patch 8. :func:`estimate_budget`
    measures these at the start of every session and multiplies by the plan (76,500 steps: 20,600 s on one
    process), adds 30% for the final evaluations, the ground-truth stores (Fashion-MNIST's on all 60,000 images)
    and the analysis claims, and divides by 2 processes (``--jobs 2``): 3.7 h on idle cores; it says so when
    its estimate exceeds 5 hours. The committed run took 4.53 h by its own clock over three sessions, with
    test-suite runs sharing the two cores for part of it.

    Attributes:
        datasets: ``synthetic`` (the embedded set) and real sets, used whole.
        seeds: seeds of every row; ``headline_seeds``: more seeds for the headline rows on the embedded set,
            ``real_headline_seeds`` on real sets; ``scratch_seeds``: seeds of the from-scratch arm (headline
            rows only) on the embedded set, ``real_scratch_seeds`` on real sets.
        pretrained_root: folder of the pretrained ViTs (``None``: the package's, from ``make pretrain``).
        quick_pretrain: pretrain a seconds-long start into ``<out>/pretrained`` (the quick configuration).
        train_images, val_images: the embedded set's sizes (real sets are used whole).
        steps, real_steps: optimiser steps on the embedded set and on real sets.
        curve_points: validation points per run (a multiple of 5, so that 80% of the schedule is one);
            ``curve_images``: the validation images they are measured on. The well-trained check
            (``final_gain_last20pct``) compares the point at 80% and the end on all validation images.
        margin: the equivalence margin (top-1 points) of "stays close" claims.
        well_trained_gain: a baseline gaining this many points or more over its last 20% is flagged.
        real_rows: the rows run on real sets (time budget).
    """

    out: str = "runs/reproduce"
    doc: str = "docs/reproduction.md"
    datasets: tuple[str, ...] = ("synthetic", "fashion-mnist")
    seeds: tuple[int, ...] = (0, 1, 2)
    headline_seeds: tuple[int, ...] = (3, 4)
    real_headline_seeds: tuple[int, ...] = ()
    real_scratch_seeds: tuple[int, ...] = ()
    scratch_seeds: tuple[int, ...] = (0, 1, 2)
    pretrained_root: str | None = None
    quick_pretrain: bool = False
    patch_sizes: tuple[int, ...] = (4, 8)
    train_images: int = 8000
    val_images: int = 2000
    steps: int = 500
    real_steps: int = 2000
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.05
    alphas: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05, 0.025)
    betas: tuple[float, ...] = (0.1, 0.2, 0.5)
    dip_alpha: float = 0.1
    winft_alpha: float = 0.1
    winft_beta: float = 0.2
    curve_points: int = 10
    curve_images: int = 2000
    margin: float = 1.0
    well_trained_gain: float = 0.5
    claim_images: int = 300
    claim_alpha: float = 0.1
    claim_random_inits: int = 3
    real_rows: tuple[str, ...] = ("vit", "awd-0.1", "awd-dip-0.2", "winft-paper", "winft-restrict", "vit-p8",
                                  "winft-paper-p8", "winft-restrict-p8")
    progress: bool = False

    def __post_init__(self) -> None:
        if self.curve_points < 5 or self.curve_points % 5:
            raise ValueError(f"curve_points must be a multiple of 5 (80% of the schedule is a point), got "
                             f"{self.curve_points}")
        for name in ("steps", "real_steps"):
            if int(getattr(self, name)) % self.curve_points:
                raise ValueError(f"{name} ({getattr(self, name)}) must be a multiple of curve_points "
                                 f"({self.curve_points}): the validation curve splits the schedule evenly")
        if not self.seeds:
            raise ValueError("give at least one seed")
        unknown = [d for d in self.datasets if d not in STUDY_DATASETS]
        if unknown or not self.datasets:
            raise ValueError(f"--datasets {' '.join(unknown)}: not data sets the study can run; choose from "
                             f"{', '.join(STUDY_DATASETS)}")


#: The data sets a study can run: those :func:`patchfield.data.build_dataset` builds without a root folder.
STUDY_DATASETS = ("synthetic", "formula", "fashion-mnist", "mnist5k")


#: A seconds-long configuration with the same code path (the tests, ``patchfield reproduce --quick``).
QUICK = StudyConfig(
    datasets=("synthetic",), seeds=(0, 1), headline_seeds=(2,), scratch_seeds=(0, 1), quick_pretrain=True,
    train_images=48, val_images=24, steps=5, real_steps=5, batch_size=16, warmup_steps=1, curve_points=5,
    curve_images=24, claim_images=8, claim_random_inits=1, alphas=(0.5, 0.1, 0.025), betas=(0.2, 0.5),
)

_MODEL = "vit_tiny_patch16_224"  # a timm name; the tiny configuration comes from the pretrained run's kwargs


def study_rows(cfg: StudyConfig, dataset: str, seed: int) -> list[Row]:
    """The rows one seed trains on ``dataset``: pretrained-start rows, then the from-scratch arm."""
    keep = None if dataset == "synthetic" else cfg.real_rows
    rows = rows_for(cfg.patch_sizes, cfg.alphas, cfg.betas, cfg.dip_alpha, cfg.winft_alpha, cfg.winft_beta, keep)
    if seed not in cfg.seeds:
        rows = [r for r in rows if r.key in HEADLINE]
    if seed in (cfg.scratch_seeds if dataset == "synthetic" else cfg.real_scratch_seeds):
        rows += [replace(r, start="scratch") for r in rows if r.key in HEADLINE]
    return rows


def run_folder(cfg: StudyConfig, dataset: str, row: Row, seed: int) -> Path:
    """The folder of one run: ``<out>/<data set>/p<patch>/s<seed>/<row key>`` (``scratch-<key>`` from scratch)."""
    name = row.key if row.start == "pretrained" else f"scratch-{row.key}"
    return Path(cfg.out) / dataset / f"p{row.patch}" / f"s{seed}" / name


def _all_seeds(cfg: StudyConfig, dataset: str = "synthetic") -> list[int]:
    """The seeds run on ``dataset``: every row's, the headline rows' extra ones, the from-scratch arm's."""
    if dataset == "synthetic":
        return sorted(set(cfg.seeds) | set(cfg.headline_seeds) | set(cfg.scratch_seeds))
    return sorted(set(cfg.seeds) | set(cfg.real_headline_seeds) | set(cfg.real_scratch_seeds))


def _data_kwargs(dataset: str, count: int) -> dict[str, Any]:
    """Generated sets take the study's size; real sets are used whole (their own train/test split)."""
    return {"num_images": count} if dataset == "synthetic" else {}


def _steps(cfg: StudyConfig, dataset: str) -> int:
    return cfg.steps if dataset == "synthetic" else cfg.real_steps


def _num_classes(dataset: str, cfg: StudyConfig) -> int:
    from ..data import build_dataset

    return build_dataset(dataset, "val", 32, **_data_kwargs(dataset, 1)).num_classes


def _pretrained(cfg: StudyConfig) -> dict[int, dict[str, Any]]:
    """Per patch size: the pretrained start's weights file, model kwargs and record (one-line error when missing)."""
    from ..training.checkpoint import read_run_info
    from ..training.pretrain import QUICK as PRETRAIN_QUICK
    from ..training.pretrain import pretrain, pretrained_weights

    root = cfg.pretrained_root
    if cfg.quick_pretrain and root is None:
        root = str(Path(cfg.out) / "pretrained")
        pretrain(replace(PRETRAIN_QUICK, root=root, patches=tuple(cfg.patch_sizes), progress=False))
    out = {}
    for patch in cfg.patch_sizes:
        weights = pretrained_weights(patch, root)
        info = read_run_info(weights.parent)
        kwargs = {k: v for k, v in info["model_kwargs"].items() if k != "num_classes"}
        out[patch] = {"weights": str(weights.resolve()), "model_kwargs": kwargs,
                      "record": {k: info[k] for k in ("name", "patch", "source", "source_top1", "train_seconds",
                                                      "steps", "images", "seed")}}
    return out


def _fingerprint(tc: Any, row: Row, pre: dict[str, Any], cfg: StudyConfig, val_kwargs: dict[str, Any]) -> dict:
    """The settings a run folder was made with (paths left out, the pretrained start by its record)."""
    skip = {"out", "weights", "groundtruth", "progress", "resume", "stop_after_steps", "checkpoint_every", "log_every"}
    shaping = ("key", "kind", "patch", "alpha", "beta", "start")  # not its label or the paper's numbers
    return {"train": {k: v for k, v in tc.to_dict().items() if k not in skip},
            "row": {k: getattr(row, k) for k in shaping},
            "pretrained": pre["record"] if row.start == "pretrained" else None, "val_data_kwargs": val_kwargs,
            "curve_points": cfg.curve_points, "curve_images": cfg.curve_images}


def _settings_guard(folder: Path, settings: dict[str, Any]) -> None:
    """Record the settings ``folder`` is made with (``settings.json``), or refuse one made with others.

    A folder holding files but no record (an older patchfield's) is refused too: nothing is reused unchecked.
    """
    made = folder / "settings.json"
    same = made.is_file() and json.dumps(json.loads(made.read_text()), sort_keys=True) == json.dumps(
        settings, sort_keys=True)
    if made.is_file() and not same or not made.is_file() and folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"{folder} holds results made with other settings than this study's (or by an older "
                         "patchfield): remove the folder to compute it again, or choose another --out")
    if not made.is_file():
        write_json_atomic(made, settings)


def _train_and_eval(cfg: StudyConfig, dataset: str, row: Row, seed: int, run_dir: Path,
                    stores: dict[tuple[str, float, float], Path], num_classes: int,
                    pre: dict[str, Any]) -> dict[str, Any]:
    """Train one row for one seed with its validation curve (skipped when finished) and evaluate it on ``val``."""
    from ..training import TrainConfig, evaluate_run
    from .curve import curve_evaluator, final_gain, train_with_curve

    key = (row.alpha, row.beta)
    train_store = stores.get(("train", *key)) if row.kind != "vit" else None
    val_store = stores.get(("val", *key)) if row.kind in ("awd", "awd-dip") else None
    val_kwargs = _data_kwargs(dataset, cfg.val_images)
    tc = TrainConfig(
        model=_MODEL, kind=row.kind, out=str(run_dir), data=dataset,
        data_kwargs=_data_kwargs(dataset, cfg.train_images),
        model_kwargs={**pre["model_kwargs"], "num_classes": num_classes},
        weights=pre["weights"] if row.start == "pretrained" else None,
        groundtruth=str(train_store) if train_store else None, steps=_steps(cfg, dataset), batch_size=cfg.batch_size,
        optimizer=cfg.optimizer, lr=cfg.lr, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        checkpoint_every=0, seed=seed, progress=cfg.progress,
    )
    _settings_guard(run_dir, _fingerprint(tc, row, pre, cfg, val_kwargs))
    done = run_dir / "eval.json"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    score = curve_evaluator(tc, val_kwargs, val_store, cfg.curve_images)
    curve = train_with_curve(tc, cfg.curve_points, score, curve_evaluator(tc, val_kwargs, val_store, None))
    train_s = time.perf_counter() - t0
    result = evaluate_run(run_dir=str(run_dir), data=dataset, split="val", data_kwargs=val_kwargs,
                          groundtruth=str(val_store) if val_store else None, progress=cfg.progress, batch_size=256)
    record = {
        "dataset": dataset, "table": row.table, "row": row.key, "label": row.label, "kind": row.kind,
        "patch": row.patch, "seed": seed, "start": row.start, "top1": round(100.0 * result["top1"], 4),
        "eo": result["eo"], "eo_full": result["eo_full"], "final_gain_last20pct": final_gain(curve, result["top1"]),
        "curve": curve, "val_images": result["num_images"], "alpha": row.alpha, "beta": row.beta,
        "train_seconds": round(train_s, 1),
    }
    write_json_atomic(done, record)
    return record


def _build_stores(cfg: StudyConfig, dataset: str, base_dir: Path, rows: list[Row], patch: int,
                  store_dir: Path) -> dict[tuple[str, float, float], Path]:
    """Ground-truth stores of the baseline at ``base_dir`` for every ``(split, alpha, beta)`` the rows need."""
    from ..data import build_dataset
    from ..groundtruth import build_groundtruth
    from ..training import load_run
    from ..training.sources import model_normalisation

    _settings_guard(store_dir, {"baseline": json.loads((base_dir / "settings.json").read_text()),
                                "train_images": cfg.train_images, "val_images": cfg.val_images})
    model, _ = load_run(base_dir)
    norm = model_normalisation(model)
    stores = {}
    for row in rows:
        if row.patch != patch or row.kind == "vit":
            continue
        splits = ("train", "val") if row.kind in ("awd", "awd-dip") else ("train",)
        for split in splits:
            key = (split, row.alpha, row.beta)
            if key in stores:
                continue
            count = cfg.train_images if split == "train" else cfg.val_images
            ds = build_dataset(dataset, split, model.patch_embed.img_size[0], **_data_kwargs(dataset, count), **norm)
            path = store_dir / f"{split}_a{row.alpha:g}_b{row.beta:g}"
            if not (path / "manifest.json").is_file():
                build_groundtruth(model, ds, path, alpha=row.alpha, beta=row.beta, batch_size=128,
                                  progress=cfg.progress)
            stores[key] = path
    return stores


def _claims_baseline(cfg: StudyConfig, seed: int) -> Path:
    """The fine-tuned baseline the analysis claims of ``seed`` are measured on (embedded set, smaller patch)."""
    small = min(cfg.patch_sizes)
    base = next(r for r in study_rows(cfg, "synthetic", seed) if r.kind == "vit" and r.patch == small)
    return run_folder(cfg, "synthetic", base, seed)


def _claims(cfg: StudyConfig, run_dir: Path, seed: int) -> dict[str, Any]:
    """Analysis claims (:func:`patchfield.claims.measure_claims`) of one seed's fine-tuned baseline on the embedded
    set's val images, against random weights and the nulls; written to ``<baseline run>/claims/`` (kept on resume)."""
    from ..claims import measure_claims
    from ..data import build_mask_dataset
    from ..training import load_run
    from ..training.sources import model_normalisation

    folder = run_dir / "claims"
    _settings_guard(folder, {"images": cfg.claim_images, "alpha": cfg.claim_alpha, "betas": list(cfg.betas),
                             "random_inits": cfg.claim_random_inits, "seed": 1000 * seed})
    if (folder / "claims.json").is_file():
        return json.loads((folder / "claims.json").read_text())
    trained, _ = load_run(run_dir)
    ds = build_mask_dataset("synthetic", "val", trained.patch_embed.img_size[0], num_images=cfg.claim_images,
                            **model_normalisation(trained))
    report = measure_claims(trained, ds, [cfg.claim_alpha], cfg.betas, cfg.claim_random_inits, batch_size=64,
                            seed=1000 * seed, model_name=f"ViT /{min(cfg.patch_sizes)} fine-tuned, seed {seed}")
    report.write(folder)
    return report.to_json()


def _run_seed(cfg: StudyConfig, dataset: str, seed: int, num_classes: int, pretrained: dict[int, dict[str, Any]],
              threads: int | None) -> list[dict]:
    """Every row of one data set for one seed: baselines, their stores, then the other rows."""
    if threads:
        torch.set_num_threads(threads)
    rows = study_rows(cfg, dataset, seed)
    runs = []
    t0 = time.perf_counter()
    for patch in sorted({r.patch for r in rows}):
        base_row = next(r for r in rows if r.kind == "vit" and r.patch == patch and r.start == "pretrained")
        base_dir = run_folder(cfg, dataset, base_row, seed)
        pre = pretrained[patch]
        runs.append(_train_and_eval(cfg, dataset, base_row, seed, base_dir, {}, num_classes, pre))
        stores = _build_stores(cfg, dataset, base_dir, rows, patch, base_dir.parent / "groundtruth")
        for row in rows:
            if row.patch == patch and row is not base_row:
                folder = run_folder(cfg, dataset, row, seed)
                runs.append(_train_and_eval(cfg, dataset, row, seed, folder, stores, num_classes, pre))
        print(f"[reproduce] {dataset} patch {patch} seed {seed} done ({time.perf_counter() - t0:.0f}s)", flush=True)
    return runs


def _step_seconds(cfg: StudyConfig, kind: str, patch: int, model_kwargs: dict[str, Any],
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
            model = build_model(_MODEL, kind, model_kwargs={**model_kwargs, "num_classes": 10})
            size, n = model.patch_embed.img_size[0], model.patch_embed.num_patches
            b = cfg.batch_size
            x, y = torch.randn(b, 3, size, size), torch.randint(0, 10, (b,))
            mask = (torch.rand(b, n, n) < 0.5) | torch.eye(n, dtype=torch.bool)
            dropped = torch.rand(b, n) < 0.2
        batch = [(x, y, None if kind == "vit" else mask, dropped if kind == "awd-dip" else None)]
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


def _step_key(kind: str, patch: int) -> str:
    """The key of ``estimate_budget``'s step times: ``"<kind>/p<patch>"``."""
    return f"{kind}/p{patch}"


def estimate_budget(cfg: StudyConfig, pretrained: dict[int, dict[str, Any]], datasets: list[str],
                    jobs: int) -> dict[str, Any]:
    """Runs × steps × a step time measured now for each (kind, patch size) the study trains, on ``min(jobs, 2)``
    processes, +30% for the evaluations, stores and claims: ``hours`` from CPU time (idle cores),
    ``hours_at_current_load`` from wall time. ``step_seconds`` keys are ``"<kind>/p<patch>"``."""
    plan = [(row, _steps(cfg, dataset)) for dataset in datasets for seed in _all_seeds(cfg, dataset)
            for row in study_rows(cfg, dataset, seed)]
    measured = {(k, p): _step_seconds(cfg, k, p, pretrained[p]["model_kwargs"])
                for k, p in sorted({(row.kind, row.patch) for row, _ in plan})}
    cpu = sum(steps * measured[row.kind, row.patch][0] for row, steps in plan)
    wall = sum(steps * measured[row.kind, row.patch][1] for row, steps in plan)
    procs = max(1, min(jobs, 2))
    return {"runs": len(plan), "steps": sum(steps for _, steps in plan),
            "step_seconds": {_step_key(k, p): round(m[0], 4) for (k, p), m in measured.items()},
            "step_seconds_wall": {_step_key(k, p): round(m[1], 4) for (k, p), m in measured.items()},
            "train_seconds_one_process": round(cpu, 1), "hours": round(1.3 * cpu / procs / 3600.0, 2),
            "hours_at_current_load": round(1.3 * wall / procs / 3600.0, 2), "jobs": jobs}


class _SessionClock:
    """This session's wall time in ``<out>/sessions.json``, one entry per session, rewritten every ``every``
    seconds by a daemon thread: a killed session still counts (to within ``every``) in the study's total time."""

    def __init__(self, out: Path, every: float = 60.0) -> None:
        import threading

        self.path, self.t0, self.every = out / "sessions.json", time.perf_counter(), every
        self.rows = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.rows.append({"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "seconds": 0.0})
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.tick()
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        while not self.stopped.wait(self.every):
            self.tick()

    def tick(self) -> float:
        """Record the time so far; returns the total over all sessions (seconds)."""
        with self.lock:
            self.rows[-1]["seconds"] = round(time.perf_counter() - self.t0, 1)
            write_json_atomic(self.path, self.rows)
            return round(sum(r["seconds"] for r in self.rows), 1)

    def stop(self) -> float:
        self.stopped.set()
        return self.tick()


def run_study(cfg: StudyConfig, jobs: int = 1) -> dict[str, Any]:
    """Run (or resume) the whole study and write ``results.json`` and the report.

    Args:
        cfg: the study's scale and protocol.
        jobs: (data set, seed) tasks trained at once in separate processes (one thread each); 1 runs in this
            process.

    Raises:
        FileNotFoundError: no pretrained start (``make pretrain``), or a data set's files are missing.
    """
    if int(jobs) < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    out = Path(cfg.out)
    write_json_atomic(out / STUDY_FILE, asdict(cfg))  # what --status reads: this study's own plan
    pretrained = _pretrained(cfg)
    clock = _SessionClock(out)
    try:
        results = _train_all(cfg, jobs, pretrained)
    finally:
        seconds = clock.stop()
    results["seconds"] = seconds
    write_json_atomic(out / "results.json", results)
    write_report(results, Path(cfg.doc))
    return results


def _train_all(cfg: StudyConfig, jobs: int, pretrained: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Every run of every data set and seed, then the analysis claims: ``results.json`` without its time."""
    datasets, classes, skipped = [], {}, {}
    for dataset in cfg.datasets:
        try:
            classes[dataset] = _num_classes(dataset, cfg)
            datasets.append(dataset)
        except (FileNotFoundError, ImportError) as e:
            skipped[dataset] = str(e)
    budget = estimate_budget(cfg, pretrained, datasets, jobs)
    print(f"[reproduce] {budget['runs']} runs, {budget['steps']:,} steps; a step takes "
          + ", ".join(f"{c:.3f} s CPU ({budget['step_seconds_wall'][k]:.3f} s wall) for {k}"
                      for k, c in budget["step_seconds"].items())
          + f" on one thread: about {budget['hours']:.1f} h on {min(jobs, 2)} idle core(s), "
          f"{budget['hours_at_current_load']:.1f} h at the current load (evaluation and stores +30%); finished runs "
          "are skipped", file=sys.stderr, flush=True)
    if budget["hours"] > 5.0:
        print("[reproduce] this is more than the study's 5 hours: lower --steps / --real-steps, or expect a longer "
              "run (it can be stopped and resumed)", file=sys.stderr, flush=True)
    step = budget["step_seconds"]
    cost = {(d, s): sum(_steps(cfg, d) * step[_step_key(r.kind, r.patch)] for r in study_rows(cfg, d, s))
            for d in datasets for s in _all_seeds(cfg, d)}
    tasks = sorted(cost, key=lambda t: -cost[t])  # the longest first: the processes finish together
    if jobs > 1:
        from ..utils.processes import worker_pool

        with worker_pool(jobs) as pool:
            done = pool.starmap(_run_seed, [(cfg, d, s, classes[d], pretrained, 1) for d, s in tasks], chunksize=1)
    else:
        done = [_run_seed(cfg, d, s, classes[d], pretrained, None) for d, s in tasks]
    runs = [r for part in done for r in part]
    claims: dict[str, Any] = {"seeds": {}}
    if "synthetic" in datasets:
        for seed in _all_seeds(cfg):  # every seed fine-tunes the baseline (a headline row)
            base = _claims_baseline(cfg, seed)
            claims["seeds"][str(seed)] = _claims(cfg, base, seed)
    results = {
        "format": FORMAT, "config": asdict(cfg),
        "pretrained": [pretrained[p]["record"] for p in cfg.patch_sizes],
        "rows": runs, "claims": claims, "skipped": skipped, "budget": budget,
        "not_run": not_run_rows(cfg.alphas, cfg.betas, cfg.dip_alpha, cfg.winft_alpha, cfg.winft_beta),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jobs} process(es), torch {torch.__version__}",
    }
    return results


#: The configuration a study folder was last run with (written at the start of every session).
STUDY_FILE = "study.json"


def read_study_json(path: Path, want: type = dict) -> Any:
    """A JSON file of a study folder holding a ``want`` (``dict`` or ``list``); ``InputError`` naming the file when it
    is not valid JSON or holds something else (a study writes its files atomically: this is corruption)."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}): restore it or delete it (a run's folder reruns)") from e
    if not isinstance(data, want):
        raise InputError(f"{path} holds a JSON {type(data).__name__}, not the {want.__name__} a study writes: "
                         "restore it or delete it (a run's folder reruns)")
    return data


def recorded_config(out: str | Path) -> StudyConfig | None:
    """The configuration the study in ``out`` was run with (``study.json``, else a finished study's
    ``results.json``); ``None`` when neither is there."""
    import dataclasses

    for name, key in ((STUDY_FILE, None), ("results.json", "config")):
        path = Path(out) / name
        if not path.is_file():
            continue
        data = read_study_json(path)
        data = data.get(key) if key else data
        if not isinstance(data, dict):
            continue
        known = {f.name for f in dataclasses.fields(StudyConfig)}
        try:
            return StudyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as e:
            raise InputError(f"{path} holds no study configuration this version reads ({one_line(e)})") from e
    return None


def _number(record: dict[str, Any], key: str, path: Path) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{path} lacks a number {key!r}: restore it or delete it (a run's folder reruns)")
    return float(value)


def study_status(cfg: StudyConfig, jobs: int = 2) -> dict[str, Any]:
    """What a study folder holds so far, read from its files alone (safe while the study runs).

    Returns ``{"datasets": {name: {"planned", "done", "started", "steps_left"}}, "claims_done", "claims_planned",
    "seconds"`` (the study time summed over sessions), ``"hours_left"`` (the steps left at the seconds per step of
    the finished runs of the same kind and patch size, else of the same patch size, on ``jobs`` processes;
    ``None`` while a patch size with steps left has no finished run)``}``. A
    ``started`` run has its settings recorded and validation points written but no ``eval.json``; its
    ``steps_left`` count from its last point.
    """
    out = Path(cfg.out)
    per_step: dict[tuple[str, int], list[float]] = {}
    left: dict[tuple[str, int], int] = {}
    datasets = {}
    for dataset in cfg.datasets:
        planned = done = started = steps_left = 0
        for seed in _all_seeds(cfg, dataset):
            for row in study_rows(cfg, dataset, seed):
                planned += 1
                folder = run_folder(cfg, dataset, row, seed)
                steps = _steps(cfg, dataset)
                if (folder / "eval.json").is_file():
                    done += 1
                    seconds = _number(read_study_json(folder / "eval.json"), "train_seconds", folder / "eval.json")
                    per_step.setdefault((row.kind, row.patch), []).append(seconds / steps)
                    continue
                curve = folder / "curve.json"
                points = read_study_json(curve, list) if curve.is_file() else []
                reached = max((int(_number(p if isinstance(p, dict) else {}, "step", curve)) for p in points),
                              default=0)
                started += reached > 0
                steps_left += steps - reached
                left[row.kind, row.patch] = left.get((row.kind, row.patch), 0) + steps - reached
        datasets[dataset] = {"planned": planned, "done": done, "started": started, "steps_left": steps_left}
    claims_seeds = _all_seeds(cfg) if "synthetic" in cfg.datasets else []
    claims_done = sum((_claims_baseline(cfg, s) / "claims" / "claims.json").is_file() for s in claims_seeds)
    sessions = out / "sessions.json"
    rows = read_study_json(sessions, list) if sessions.is_file() else []
    seconds = sum(_number(r if isinstance(r, dict) else {}, "seconds", sessions) for r in rows)
    by_patch: dict[int, list[float]] = {}
    for (_, patch), times in per_step.items():
        by_patch.setdefault(patch, []).extend(times)
    rate = {key: per_step.get(key) or by_patch.get(key[1]) for key, n in left.items() if n}
    hours_left = None
    if all(rate.values()):
        work = sum(left[key] * sum(times) / len(times) for key, times in rate.items())
        hours_left = round(work / max(1, min(int(jobs), 2)) / 3600.0, 2)
    return {"datasets": datasets, "claims_done": claims_done, "claims_planned": len(claims_seeds),
            "seconds": round(seconds, 1), "hours_left": hours_left}


def config_with(cfg: StudyConfig, **changes: Any) -> StudyConfig:
    """``cfg`` with some fields replaced (``None`` values ignored)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})
