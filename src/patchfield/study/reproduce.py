"""The reproduction study: the paper's protocol at a scale a 2-core CPU runs (issue 6).

1. Train a baseline ViT per data set, patch size and seed.
2. From it, compute every image's windows and DIP sets (ground-truth stores, SPEC §6).
3. Retrain AWD-ViT per ``alpha`` (Table 1), AWD ``alpha=0.1`` + DIP per ``beta`` (Table 2) and
   WinfT in both modes at both patch sizes (Table 3), from the same initialisation (seed) and
   with the same budget as the baseline.
4. Report top-1 (mean ± std over seeds) and ``E_O`` next to the paper's rows, and measure the
   analysis claims (Sec. 4.2, 4.3) against object masks with two controls each (:mod:`patchfield.claims`).

Every finished run leaves ``eval.json`` in its folder; a rerun skips it, so a killed study
resumes where it stopped. :func:`write_report` renders ``docs/reproduction.md``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..utils.io import write_json_atomic

__all__ = ["StudyConfig", "QUICK", "run_study", "rows_for"]


@dataclass(frozen=True)
class StudyConfig:
    """Scale and protocol of the study; the defaults are the committed run."""

    out: str = "runs/reproduce"
    doc: str = "docs/reproduction.md"
    datasets: tuple[str, ...] = ("synthetic", "fashion-mnist")
    seeds: tuple[int, ...] = (0, 1, 2)
    image_size: int = 32
    patch_sizes: tuple[int, ...] = (4, 8)
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    train_images: int = 8000
    val_images: int = 1000
    steps: int = 600
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 2e-3
    warmup_steps: int = 60
    weight_decay: float = 0.05
    alphas: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05, 0.025)
    betas: tuple[float, ...] = (0.1, 0.2, 0.5)
    dip_alpha: float = 0.1
    winft_alpha: float = 0.1
    winft_beta: float = 0.2
    claim_images: int = 300
    claim_alpha: float = 0.1
    claim_random_inits: int = 3
    #: data sets other than the embedded one run the rows below only (time budget)
    real_rows: tuple[str, ...] = ("vit", "awd-0.1", "awd-dip-0.2", "winft-paper", "winft-restrict")
    progress: bool = False


#: A seconds-long configuration with the same code path (used by the tests).
QUICK = StudyConfig(
    datasets=("synthetic",), seeds=(0, 1), train_images=48, val_images=24, steps=2, batch_size=16,
    warmup_steps=1, embed_dim=16, depth=2, num_heads=2, claim_images=8, alphas=(0.5, 0.1, 0.025), betas=(0.2, 0.5),
)


@dataclass(frozen=True)
class Row:
    """One row of a table: a model kind trained with fixed fields (or none)."""

    table: str
    key: str
    label: str
    kind: str
    patch: int
    alpha: float | None = None
    beta: float = 0.0
    paper: tuple[float, float] | None = None  # (top-1 %, E_O) of the paper's corresponding row
    paper_full: int = 38416  # N² of that row's paper model (B/16: 38,416; B/32: 2,401)


# The paper's rows (SPEC §11) beside ours: ViT-B/16 ↔ our patch 4 (N = 64), B/32 ↔ patch 8 (N = 16).
_T1 = {0.5: (81.62, 38334), 0.2: (81.25, 10283), 0.1: (81.90, 8866), 0.05: (80.60, 6801), 0.025: (78.28, 4971)}
_T2 = {0.1: (82.09, 7982), 0.2: (82.40, 7080), 0.5: (80.62, 4420)}


def rows_for(cfg: StudyConfig, dataset: str) -> list[Row]:
    """The rows the study trains for ``dataset``."""
    small, big = min(cfg.patch_sizes), max(cfg.patch_sizes)
    rows = [Row("1", "vit", f"ViT /{small}", "vit", small, paper=(81.20, 38416))]
    rows += [Row("1", f"awd-{a:g}", f"AWD-ViT α={a:g}", "awd", small, a, 0.0, _T1.get(a)) for a in cfg.alphas]
    rows += [
        Row("2", f"awd-dip-{b:g}", f"AWD-ViT α={cfg.dip_alpha:g} + DIP β={b:g}", "awd-dip", small, cfg.dip_alpha, b,
            _T2.get(b))
        for b in cfg.betas
    ]
    paper3 = {(small, "vit"): (81.20, 38416), (big, "vit"): (74.46, 2401), (small, "winft"): (83.11, 16938),
              (big, "winft"): (78.74, 906)}
    for p in sorted(set(cfg.patch_sizes)):
        if p != small:
            rows.append(Row("3", f"vit-p{p}", f"ViT /{p}", "vit", p, paper=paper3[(p, "vit")], paper_full=2401))
        for mode in ("paper", "restrict"):
            key = f"winft-{mode}" if p == small else f"winft-{mode}-p{p}"
            rows.append(Row("3", key, f"WinfT /{p} ({mode} mode)", f"winft-{mode}", p, cfg.winft_alpha,
                            cfg.winft_beta, paper3[(p, "winft")] if mode == "paper" else None,
                            38416 if p == small else 2401))
    if dataset != "synthetic":
        rows = [r for r in rows if r.key in cfg.real_rows]
    return rows


def _model_kwargs(cfg: StudyConfig, patch: int, num_classes: int) -> dict[str, Any]:
    return {"img_size": cfg.image_size, "patch_size": patch, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
            "num_heads": cfg.num_heads, "mlp_ratio": 2.0, "num_classes": num_classes}


def _data_kwargs(dataset: str, count: int) -> dict[str, Any]:
    """Generated sets take the study's size; real sets are used whole (their own train/test split)."""
    return {"num_images": count} if dataset == "synthetic" else {}


_MODEL = "vit_tiny_patch16_224"  # a timm name; the study's tiny configuration comes in model_kwargs


def _num_classes(dataset: str, cfg: StudyConfig) -> int:
    from ..data import build_dataset

    return build_dataset(dataset, "val", cfg.image_size, **_data_kwargs(dataset, 1)).num_classes


def _train_and_eval(cfg: StudyConfig, dataset: str, row: Row, seed: int, run_dir: Path,
                    stores: dict[tuple[str, float, float], Path], num_classes: int) -> dict[str, Any]:
    """Train one row for one seed (skipped when ``eval.json`` exists) and evaluate it on ``val``."""
    from ..training import TrainConfig, evaluate_run, train

    done = run_dir / "eval.json"
    key = (row.alpha, row.beta)
    train_store = stores.get(("train", *key)) if row.kind != "vit" else None
    t0 = time.perf_counter()
    tc = TrainConfig(
        model=_MODEL, kind=row.kind, out=str(run_dir), data=dataset,
        data_kwargs=_data_kwargs(dataset, cfg.train_images), model_kwargs=_model_kwargs(cfg, row.patch, num_classes),
        groundtruth=str(train_store) if train_store else None, steps=cfg.steps, batch_size=cfg.batch_size,
        optimizer=cfg.optimizer, lr=cfg.lr, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        checkpoint_every=0, seed=seed, progress=cfg.progress, resume=(run_dir / "checkpoint.pt").exists(),
    )
    if done.is_file():  # finished: reuse it only when it was trained with these settings
        finished = json.loads(done.read_text())
        diff = TrainConfig.from_dict(finished["train_config"]).mismatches(tc) if "train_config" in finished else []
        if diff:
            raise ValueError(f"{run_dir} holds a finished run of other settings ({'; '.join(diff)}): rerun the "
                             "study with its settings, or give another --out")
        return finished
    train(tc)
    train_s = time.perf_counter() - t0
    val_store = stores.get(("val", *key)) if row.kind in ("awd", "awd-dip") else None
    result = evaluate_run(run_dir=str(run_dir), data=dataset, split="val",
                          data_kwargs=_data_kwargs(dataset, cfg.val_images),
                          groundtruth=str(val_store) if val_store else None, progress=cfg.progress)
    result = {**result, "row": row.key, "seed": seed, "train_seconds": round(train_s, 1),
              "train_config": tc.to_dict()}
    write_json_atomic(done, result)
    return result


def _build_stores(cfg: StudyConfig, dataset: str, base_dir: Path, rows: list[Row], patch: int,
                  store_dir: Path) -> dict[tuple[str, float, float], Path]:
    """Ground-truth stores of the baseline at ``base_dir`` for every ``(split, alpha, beta)`` the rows need."""
    from ..data import build_dataset
    from ..groundtruth import build_groundtruth
    from ..training import load_run
    from ..training.sources import model_normalisation

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
            ds = build_dataset(dataset, split, cfg.image_size, **_data_kwargs(dataset, count), **norm)
            path = store_dir / f"{split}_a{row.alpha:g}_b{row.beta:g}"
            if not (path / "manifest.json").is_file():
                build_groundtruth(model, ds, path, alpha=row.alpha, beta=row.beta, batch_size=128,
                                  progress=cfg.progress)
            stores[key] = path
    return stores


def _claims(cfg: StudyConfig, run_dirs: list[Path]) -> dict[str, Any]:
    """Analysis claims (:func:`patchfield.claims.measure_claims`) of every seed's baseline on the embedded data
    set's val images, against random weights and the nulls; the seeds' images pooled into one report."""
    from ..claims import ClaimsReport, measure_claims
    from ..data import build_mask_dataset
    from ..training import load_run
    from ..training.sources import model_normalisation

    reports = []
    for run_dir in run_dirs:
        trained, info = load_run(run_dir)
        seed = int(info.get("seed", 0))
        ds = build_mask_dataset("synthetic", "val", cfg.image_size, num_images=cfg.claim_images,
                                **model_normalisation(trained))
        report = measure_claims(trained, ds, [cfg.claim_alpha], cfg.betas, cfg.claim_random_inits, batch_size=64,
                                seed=1000 * seed)
        report.names = [f"s{seed}/{name}" for name in report.names]
        reports.append(report)
    pooled = ClaimsReport.merge(reports, model=f"ViT /{min(cfg.patch_sizes)} baselines")
    return pooled.to_json()


def _run_seed(cfg: StudyConfig, dataset: str, seed: int, num_classes: int, threads: int | None) -> list[dict]:
    """Every row of one data set for one seed: baselines, their stores, then the other rows."""
    if threads:
        torch.set_num_threads(threads)
    rows = rows_for(cfg, dataset)
    runs = []
    t0 = time.perf_counter()
    for patch in sorted({r.patch for r in rows}):
        base_row = next(r for r in rows if r.kind == "vit" and r.patch == patch)
        root = Path(cfg.out) / dataset / f"p{patch}" / f"s{seed}"
        runs.append(_train_and_eval(cfg, dataset, base_row, seed, root / base_row.key, {}, num_classes))
        stores = _build_stores(cfg, dataset, root / base_row.key, rows, patch, root / "groundtruth")
        for row in rows:
            if row.patch == patch and row is not base_row:
                runs.append(_train_and_eval(cfg, dataset, row, seed, root / row.key, stores, num_classes))
        print(f"[reproduce] {dataset} patch {patch} seed {seed} done ({time.perf_counter() - t0:.0f}s)", flush=True)
    return [{"dataset": dataset, **r} for r in runs]


def run_study(cfg: StudyConfig, jobs: int = 1) -> dict[str, Any]:
    """Run (or resume) the whole study and write ``results.json`` and the report.

    Args:
        cfg: the study's scale and protocol.
        jobs: seeds trained at once in separate processes (one thread each); 1 runs in this process.
    """
    from .report import write_report

    out = Path(cfg.out)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"config": asdict(cfg), "runs": [], "claims": {}, "skipped": {}}
    tasks = []
    for dataset in cfg.datasets:
        try:
            num_classes = _num_classes(dataset, cfg)
        except (FileNotFoundError, ImportError) as e:
            results["skipped"][dataset] = str(e)
            continue
        tasks += [(dataset, seed, num_classes) for seed in cfg.seeds]
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs) as pool:
            done = pool.starmap(_run_seed, [(cfg, d, s, n, 1) for d, s, n in tasks])
    else:
        done = [_run_seed(cfg, d, s, n, None) for d, s, n in tasks]
    results["runs"] = [r for runs in done for r in runs]
    if "synthetic" in cfg.datasets and "synthetic" not in results["skipped"]:
        small = min(cfg.patch_sizes)
        baselines = [out / "synthetic" / f"p{small}" / f"s{seed}" / "vit" for seed in cfg.seeds]
        results["claims"] = _claims(cfg, baselines)
    results["rows"] = {d: [asdict(r) for r in rows_for(cfg, d)] for d in cfg.datasets}
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, {jobs} process(es), "
                          f"torch {torch.__version__}")
    write_json_atomic(out / "results.json", results)
    write_report(results, Path(cfg.doc))
    return results


def config_with(cfg: StudyConfig, **changes: Any) -> StudyConfig:
    """``cfg`` with some fields replaced (``None`` values ignored)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})


