"""The reproduction study: the paper's protocol from a pretrained start, at a scale a 2-core CPU runs.

1. Every row starts from the pretrained ViT of its patch size (:func:`patchfield.training.pretrain.pretrained_weights`,
   ``make pretrain``; the quick configuration pretrains its own in seconds). The baseline ViT is
   fine-tuned on all training images (Fashion-MNIST: the 60,000, scored on its 10,000 test images; the
   embedded set: ``train_images``/``val_images``).
2. From each seed's fine-tuned baseline, every image's windows and DIP sets (ground-truth stores, docs/spec.md §6).
3. AWD per ``alpha`` (Table 1), AWD ``dip_alpha`` + DIP per ``beta`` (Table 2), WinfT in both modes at both
   patch sizes (Table 3), from the pretrained start with the baseline's budget and data order (same seed).
   The headline rows (:data:`patchfield.study.rows.HEADLINE`) also run ``headline_seeds`` and, from random
   weights, the from-scratch arm (``scratch_seeds``; its AWD and WinfT rows use the fine-tuned baseline's fields,
   so start is the only difference).
4. Every run records its validation curve (:mod:`.curve`); the analysis claims are measured per seed on the
   fine-tuned baseline (:mod:`patchfield.claims`) and combined with seeds as the unit (:mod:`.stats`).

The 14×14 grid (:data:`patchfield.study.config.GRID14`, the ``controls`` plan) runs the same steps with its own
rows (:func:`patchfield.study.rows.control_rows`): AWD's windows also come from a random-weights copy of the
baseline and as fixed local squares (:func:`write_local_store`), WinfT also runs without its BCE, and one seed's
baseline also trains at twice the schedule.

Every finished run leaves ``eval.json`` in its folder with the settings it was run with; a rerun skips
it, so a killed study resumes where it stopped (also across sessions), and a folder made with other settings
is refused. :func:`patchfield.study.report.write_report` renders ``docs/reproduction.md`` and ``.json``.
The settings are :class:`patchfield.study.config.StudyConfig`; the time it takes, :mod:`.budget`.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, one_line
from ..groundtruth import GroundTruthStore
from ..kinds import VIT, Kind
from ..utils.io import write_json_atomic
from .budget import estimate_budget, log_budget, step_key
from .config import MODEL, StudyConfig, all_seeds, data_kwargs, grid_of, run_folder, study_rows, train_steps
from .report import FORMAT, results_of_report, write_report
from .rows import Row, not_run_rows

__all__ = ["run_study", "study_status", "write_local_store", "write_study_report"]

logger = logging.getLogger(__name__)


def _num_classes(dataset: str, cfg: StudyConfig) -> int:
    from ..data import build_dataset

    return build_dataset(dataset, "val", 32, **data_kwargs(dataset, 1)).num_classes


def _pretrained(cfg: StudyConfig) -> dict[int, dict[str, Any]]:
    """Per patch size: the pretrained start's weights file, model kwargs and record (one-line error when missing)."""
    from ..runs import read_run_info
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
        if cfg.image_size is not None:  # the start's position embeddings are resampled to this grid
            kwargs["img_size"] = int(cfg.image_size)
        out[patch] = {"weights": str(weights.resolve()), "model_kwargs": kwargs,
                      "record": {k: info[k] for k in ("name", "patch", "source", "source_top1", "train_seconds",
                                                      "steps", "images", "seed")}}
    return out


def _fingerprint(tc: Any, row: Row, pre: dict[str, Any], cfg: StudyConfig, val_kwargs: dict[str, Any]) -> dict:
    """The settings a run folder was made with (paths left out, the pretrained start by its record)."""
    skip = {"out", "weights", "groundtruth", "progress", "resume", "stop_after_steps", "checkpoint_every", "log_every"}
    return {"train": {k: v for k, v in tc.to_dict().items() if k not in skip}, "row": row.shaping(),
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
                    stores: dict[tuple[str, str, float, float], Path], num_classes: int,
                    pre: dict[str, Any]) -> dict[str, Any]:
    """Train one row for one seed with its validation curve (skipped when finished) and evaluate it on ``val``."""
    from ..training import TrainConfig, evaluate_run
    from .curve import curve_evaluator, final_gain, train_with_curve

    key = (row.windows, row.alpha, row.beta)
    train_store = stores.get(("train", *key)) if row.kind.uses_groundtruth else None
    val_store = stores.get(("val", *key)) if row.kind.attends_fields else None
    val_kwargs = data_kwargs(dataset, cfg.val_images)
    tc = TrainConfig(
        model=MODEL, kind=row.kind, out=str(run_dir), data=dataset,
        data_kwargs=data_kwargs(dataset, cfg.train_images),
        model_kwargs={**pre["model_kwargs"], "num_classes": num_classes},
        weights=pre["weights"] if row.start == "pretrained" else None,
        groundtruth=str(train_store) if train_store else None, steps=train_steps(cfg, dataset) * row.schedule,
        batch_size=cfg.batch_size, lambda_bce=row.lambda_bce,
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
        "dataset": dataset, "table": row.table, "row": row.key, "label": row.label, "kind": row.kind.name,
        "patch": row.patch, "seed": seed, "start": row.start, "top1": round(100.0 * result["top1"], 4),
        "eo": result["eo"], "eo_full": result["eo_full"], "final_gain_last20pct": final_gain(curve, result["top1"]),
        "curve": curve, "val_images": result["num_images"], "alpha": row.alpha, "beta": row.beta,
        "train_seconds": round(train_s, 1), "grid": grid_of(cfg, row.patch),
        "eo_fraction": round(result["eo"] / result["eo_full"], 6),
    }
    write_json_atomic(done, record)
    return record


def _build_stores(cfg: StudyConfig, dataset: str, base_dir: Path, rows: list[Row], patch: int,
                  store_dir: Path, seed: int) -> dict[tuple[str, str, float, float], Path]:
    """Ground-truth stores for every ``(split, windows, alpha, beta)`` the rows need: those of the baseline at
    ``base_dir``, of a random-weights copy of it (``random-u``, initialised from ``seed``) and the local squares
    (``local``, sized to the E_O of the baseline's windows on the training images)."""
    from ..claims import random_copy
    from ..data import build_dataset
    from ..groundtruth import build_groundtruth
    from ..loading import load_run
    from ..training.sources import model_normalisation

    _settings_guard(store_dir, {"baseline": json.loads((base_dir / "settings.json").read_text()),
                                "train_images": cfg.train_images, "val_images": cfg.val_images})
    model, _ = load_run(base_dir)
    norm = model_normalisation(model)
    needed = sorted({(split, row.windows, row.alpha, row.beta) for row in rows
                     if row.patch == patch and row.kind.uses_groundtruth
                     for split in (("train", "val") if row.kind.attends_fields else ("train",))},
                    key=lambda k: (k[1] == "local", k))  # the local squares read the trained stores
    stores: dict[tuple[str, str, float, float], Path] = {}
    for split, windows, alpha, beta in needed:
        name = f"{split}_a{alpha:g}_b{beta:g}" + ("" if windows == "trained" else f"_{windows}")
        path = store_dir / name
        if not (path / "manifest.json").is_file():
            if windows == "local":
                target = GroundTruthStore(stores["train", "trained", alpha, beta]).expected_interactions(dip=False)
                write_local_store(stores[split, "trained", alpha, beta], path, target)
            else:
                count = cfg.train_images if split == "train" else cfg.val_images
                ds = build_dataset(dataset, split, model.patch_embed.img_size[0], **data_kwargs(dataset, count),
                                   **norm)
                source = random_copy(model, 7919 * (seed + 1)) if windows == "random-u" else model
                build_groundtruth(source, ds, path, alpha=alpha, beta=beta, batch_size=128, progress=cfg.progress)
        stores[split, windows, alpha, beta] = path
    return stores


def write_local_store(trained: Path, out: Path, interactions: float) -> Path:
    """A copy of the store at ``trained`` whose every window is the square of :func:`patchfield.windows.local_windows`
    at ``interactions`` (``D`` empty): the same images, labels and settings, only the fields replaced."""
    import numpy as np

    from ..groundtruth.store import MANIFEST, read_shard, write_shard
    from ..windows import local_windows

    manifest = json.loads((trained / MANIFEST).read_text())
    windows = local_windows(tuple(manifest["grid"]), interactions)
    bounds = windows.bounds().numpy()
    o = int(windows.interactions())
    out.mkdir(parents=True, exist_ok=True)
    for shard in manifest["shards"]:
        arrays, meta = read_shard(trained / shard["file"])
        b = len(arrays["valid"])
        arrays = {**arrays, "bounds": np.broadcast_to(bounds.astype(arrays["bounds"].dtype), (b, *bounds.shape)).copy(),
                  "dropped": np.zeros_like(arrays["dropped"]), "interactions": np.full(b, o, dtype=np.int64),
                  "window_interactions": np.full(b, o, dtype=np.int64)}
        write_shard(out / shard["file"], arrays, meta)
    write_json_atomic(out / MANIFEST, {**manifest, "expected_interactions": float(o),
                                       "windows": {"source": "local", "of": str(trained), "target": interactions}})
    return out


def _claims_baseline(cfg: StudyConfig, seed: int) -> Path:
    """The fine-tuned baseline the analysis claims of ``seed`` are measured on (embedded set, smaller patch)."""
    small = min(cfg.patch_sizes)
    base = next(r for r in study_rows(cfg, "synthetic", seed) if r.kind == VIT and r.patch == small)
    return run_folder(cfg, "synthetic", base, seed)


def _claims(cfg: StudyConfig, run_dir: Path, seed: int) -> dict[str, Any]:
    """Analysis claims (:func:`patchfield.claims.measure_claims`) of one seed's fine-tuned baseline on the embedded
    set's val images, against random weights and the nulls; written to ``<baseline run>/claims/`` (kept on resume)."""
    from ..claims import measure_claims
    from ..data import build_mask_dataset
    from ..loading import load_run
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
              threads: int | None, log_level: int = logging.NOTSET) -> list[dict]:
    """Every row of one data set for one seed: baselines, their stores, then the other rows.

    In a worker process ``threads`` sets its torch threads and ``log_level`` (the ``patchfield`` logger's level in
    the process that started it, when set) shows its messages as the command line does.
    """
    if threads:
        torch.set_num_threads(threads)
    if log_level != logging.NOTSET:
        from ..logs import cli_logging

        cli_logging(log_level)
    rows = study_rows(cfg, dataset, seed)
    runs = []
    t0 = time.perf_counter()
    for patch in sorted({r.patch for r in rows}):
        base_row = next(r for r in rows if r.kind == VIT and r.patch == patch and r.start == "pretrained")
        base_dir = run_folder(cfg, dataset, base_row, seed)
        pre = pretrained[patch]
        runs.append(_train_and_eval(cfg, dataset, base_row, seed, base_dir, {}, num_classes, pre))
        stores = _build_stores(cfg, dataset, base_dir, rows, patch, base_dir.parent / "groundtruth", seed)
        for row in rows:
            if row.patch == patch and row is not base_row:
                folder = run_folder(cfg, dataset, row, seed)
                runs.append(_train_and_eval(cfg, dataset, row, seed, folder, stores, num_classes, pre))
        logger.info("[reproduce] %s patch %d seed %d done (%.0fs)", dataset, patch, seed, time.perf_counter() - t0)
    return runs


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
    write_study_report(cfg, results)
    return results


def write_study_report(cfg: StudyConfig, results: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``cfg.doc`` from this study's results and the other grid's part of the report there now.

    ``results`` ``None`` reads ``<out>/results.json``, else this grid's part of the report's JSON
    (``cfg.doc`` with ``.json``): a report regenerates from its JSON alone. The small grid's study is the
    ``tables`` plan, the 14×14 grid's the ``controls`` plan (:func:`patchfield.study.report.write_report`).

    Raises:
        FileNotFoundError: neither ``<out>/results.json`` nor this grid's part of the report's JSON exists.
    """
    doc_json = Path(cfg.doc).with_suffix(".json")
    parts = list(results_of_report(json.loads(doc_json.read_text()))) if doc_json.is_file() else [None, None]
    mine = 1 if cfg.plan == "controls" else 0
    if results is None:
        path = Path(cfg.out) / "results.json"
        results = read_study_json(path) if path.is_file() else parts[mine]
        if results is None:
            raise FileNotFoundError(f"no finished study in {cfg.out} ({path} is missing) and no such part in "
                                    f"{doc_json}: run it first")
    parts[mine] = results
    return write_report(parts[0], Path(cfg.doc), grid=parts[1])


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
    log_budget(budget, jobs)
    step = budget["step_seconds"]
    cost = {(d, s): sum(train_steps(cfg, d) * r.schedule * step[step_key(r.kind, r.patch)]
                        for r in study_rows(cfg, d, s))
            for d in datasets for s in all_seeds(cfg, d)}
    tasks = sorted(cost, key=lambda t: -cost[t])  # the longest first: the processes finish together
    if jobs > 1:
        from ..utils.processes import worker_pool

        with worker_pool(jobs) as pool:
            level = logging.getLogger("patchfield").level
            done = pool.starmap(_run_seed, [(cfg, d, s, classes[d], pretrained, 1, level) for d, s in tasks],
                                chunksize=1)
    else:
        done = [_run_seed(cfg, d, s, classes[d], pretrained, None) for d, s in tasks]
    runs = [r for part in done for r in part]
    claims: dict[str, Any] = {"seeds": {}}
    if "synthetic" in datasets:
        for seed in all_seeds(cfg):  # every seed fine-tunes the baseline (a headline row)
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
    the runs of the same kind and patch size, else of the same patch size, on ``jobs`` processes;
    ``None`` while a patch size with steps left has no timed run), ``"untimed"`` (the ``"<kind>/p<patch>"`` with
    steps left and no run that has trained yet, counted at another kind's time per step: every kind costs at least
    a ViT step, so with any, ``hours_left`` is a lower bound)``}``. A run's time per step is its training log's
    (:func:`patchfield.training.loop.logged_time`, over every session that trained it). A
    ``started`` run has its settings recorded and validation points written but no ``eval.json``; its
    ``steps_left`` count from its last point.
    """
    from ..training.loop import LOG_FILE, logged_time

    out = Path(cfg.out)
    per_step: dict[tuple[Kind, int], list[float]] = {}
    left: dict[tuple[Kind, int], int] = {}
    datasets = {}
    for dataset in cfg.datasets:
        planned = done = started = steps_left = 0
        for seed in all_seeds(cfg, dataset):
            for row in study_rows(cfg, dataset, seed):
                planned += 1
                folder = run_folder(cfg, dataset, row, seed)
                steps = train_steps(cfg, dataset) * row.schedule
                seconds, trained = logged_time(folder / LOG_FILE)
                if trained:
                    per_step.setdefault((row.kind, row.patch), []).append(seconds / trained)
                if (folder / "eval.json").is_file():
                    _number(read_study_json(folder / "eval.json"), "top1", folder / "eval.json")  # the report reads it
                    done += 1
                    continue
                curve = folder / "curve.json"
                points = read_study_json(curve, list) if curve.is_file() else []
                reached = max((int(_number(p if isinstance(p, dict) else {}, "step", curve)) for p in points),
                              default=0)
                started += reached > 0
                steps_left += steps - reached
                left[row.kind, row.patch] = left.get((row.kind, row.patch), 0) + steps - reached
        datasets[dataset] = {"planned": planned, "done": done, "started": started, "steps_left": steps_left}
    claims_seeds = all_seeds(cfg) if "synthetic" in cfg.datasets else []
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
    untimed = sorted(step_key(kind, patch) for kind, patch in rate if (kind, patch) not in per_step)
    return {"datasets": datasets, "claims_done": claims_done, "claims_planned": len(claims_seeds),
            "seconds": round(seconds, 1), "hours_left": hours_left, "untimed": untimed}

