"""The main job on the embedded default: a small trained ViT, its analysis, every figure, the explorer.

``run_demo(out)`` loads the shipped demo models (``patchfield/assets/demo``: a ViT trained on the
embedded synthetic data set, and a WinfT trained from its responsive fields), measures their
accuracy, analyses a handful of validation images and writes the paper's figures, ``fields.json``
and the interactive page into ``out``. ``train_demo_models(folder)`` regenerates the shipped
models (``patchfield demo --train-models DIR``); ``tests/test_demo.py`` checks the accuracy
they claim in ``metrics.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .utils.io import atomic_write, write_json_atomic

__all__ = ["DEMO_MODEL_KWARGS", "DEMO_TRAIN", "demo_models_dir", "run_demo", "train_demo_models"]

#: The demo ViT: 32×32 images, 4×4 patches (an 8×8 grid, N = 64), 4 layers, 4 heads, width 64.
DEMO_MODEL_KWARGS: dict[str, Any] = {
    "img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0, "num_classes": 4,
}
#: Training of the demo models (AdamW from scratch: the paper's SGD recipe fine-tunes pretrained weights).
DEMO_TRAIN: dict[str, Any] = {
    "data": "synthetic", "data_kwargs": {"num_images": 8000}, "steps": 1000, "batch_size": 64, "lr": 2e-3,
    "warmup_steps": 100, "weight_decay": 0.05, "optimizer": "adamw", "seed": 0, "checkpoint_every": 100,
}
DEMO_ALPHA, DEMO_BETA = 0.1, 0.2
_TIMM_NAME = "vit_tiny_patch16_224"  # the architecture family; DEMO_MODEL_KWARGS sets the size
_VAL_IMAGES = 1000


def demo_models_dir() -> Path:
    """The folder of the shipped demo models inside the installed package."""
    return Path(str(resources.files("patchfield").joinpath("assets", "demo")))


def _evaluate(run_dir: Path) -> dict[str, Any]:
    from .training import evaluate_run

    return evaluate_run(run_dir=str(run_dir), data="synthetic", split="val",
                        data_kwargs={"num_images": _VAL_IMAGES}, progress=False)


def train_demo_models(folder: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train the demo ViT, build its ground truth, train the demo WinfT; write them into ``folder``.

    Takes a few minutes on 2 CPU cores. ``folder`` gets ``vit/`` and ``winft/`` (each
    ``model.safetensors`` + ``run.json``) and ``metrics.json`` with their validation accuracy.
    """
    from .data import build_dataset
    from .groundtruth import build_groundtruth
    from .kinds import VIT, WINFT_PAPER, Kind
    from .loading import load_run
    from .training import TrainConfig, train
    from .training.sources import model_normalisation

    folder = Path(folder)
    work = folder.parent / f".{folder.name}.work"  # a killed run resumes from here
    t0 = time.perf_counter()

    def fit(name: str, kind: Kind, **extra: Any) -> None:
        out = work / name
        if not (out / "run.json").is_file():
            train(TrainConfig(model=_TIMM_NAME, kind=kind, out=str(out), model_kwargs=DEMO_MODEL_KWARGS,
                              progress=progress, resume=(out / "checkpoint.pt").is_file(),
                              **DEMO_TRAIN, **extra))

    fit("vit", VIT)
    vit, _ = load_run(work / "vit")
    ds = build_dataset("synthetic", "train", 32, **DEMO_TRAIN["data_kwargs"], **model_normalisation(vit))
    build_groundtruth(vit, ds, work / "groundtruth", alpha=DEMO_ALPHA, beta=DEMO_BETA, batch_size=256,
                      progress=progress)  # resumes an unfinished store
    fit("winft", WINFT_PAPER, groundtruth=str(work / "groundtruth"))
    metrics = {"train_seconds": round(time.perf_counter() - t0, 1), "val_images": _VAL_IMAGES}
    for name in ("vit", "winft"):
        r = _evaluate(work / name)
        metrics[name] = {"top1": r["top1"], "eo": r["eo"], "eo_full": r["eo_full"]}
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vit", "winft"):
        (folder / name).mkdir(exist_ok=True)
        for f in ("model.safetensors", "run.json"):
            with atomic_write(folder / name / f) as tmp:
                shutil.copyfile(work / name / f, tmp)
    write_json_atomic(folder / "metrics.json", metrics)
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_write(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def run_demo(out: str | Path, models: str | Path | None = None, num_images: int = 6,
             alpha: float = DEMO_ALPHA, beta: float = DEMO_BETA) -> dict[str, Any]:
    """Analyse ``num_images`` validation images of the embedded data set with the demo models.

    Writes into ``out``: ``figures/<image>/`` (every figure of the paper, PNG, and
    ``fields.json``), ``images/`` (the inputs and object masks), ``explorer.html`` and
    ``summary.json``; returns the summary.
    """
    from .capture import capture_attention
    from .data import build_dataset
    from .explorer import write_explorer
    from .figures import write_paper_figures
    from .loading import load_run
    from .training.sources import model_normalisation

    out = Path(out)
    models = Path(models) if models is not None else demo_models_dir()
    if not (models / "vit" / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no demo models in {models}: regenerate them with `patchfield demo --train-models {models}`"
        )
    vit, _ = load_run(models / "vit")
    winft, _ = load_run(models / "winft")
    claimed = json.loads((models / "metrics.json").read_text())
    val = build_dataset("synthetic", "val", 32, num_images=_VAL_IMAGES, **model_normalisation(vit))
    accuracy = {name: _evaluate(models / name) for name in ("vit", "winft")}

    picks = list(range(num_images))
    names = [f"val_{i:03d}" for i in picks]
    for i, name in zip(picks, names):  # the inputs for the reader; the figures take the tensors themselves
        _save_png(val.raw_image(i), out / "images" / f"{name}.png")
        _save_png(val.object_mask(i).numpy().astype(np.uint8) * 255, out / "images" / f"{name}_mask.png")
    x = torch.stack([val[i][0] for i in picks])
    figures = write_paper_figures(vit, list(x), [val.object_mask(i) for i in picks], winft, out / "figures",
                                  names=names, alpha=alpha, beta=beta)
    with torch.no_grad():
        maps = capture_attention(vit, x[:1])
    write_explorer(out / "explorer.html", maps, val.raw_image(picks[0]), 0, alpha, beta,
                   title=f"patchfield explorer: {names[0]}")

    records = [figures.fields[name] for name in names]
    grid = records[0]["grid"]
    summary = {
        "model": {"timm": _TIMM_NAME, **DEMO_MODEL_KWARGS},
        "val_top1": {k: round(v["top1"], 4) for k, v in accuracy.items()},
        "claimed_top1": {k: claimed[k]["top1"] for k in ("vit", "winft")},
        "alpha": alpha, "beta": beta, "grid": grid,
        "eo_analysed_images": float(np.mean([r["interactions"] for r in records])),
        "eo_full": (grid[0] * grid[1]) ** 2,
        "winft_eo_val": accuracy["winft"]["eo"],
        "explorer": str(out / "explorer.html"), "figures": str(out / "figures"),
    }
    write_json_atomic(out / "summary.json", summary)
    return summary
