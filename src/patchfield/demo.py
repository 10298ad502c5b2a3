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
    from .training import TrainConfig, load_run, train
    from .training.sources import model_normalisation

    folder = Path(folder)
    work = folder.parent / f".{folder.name}.work"  # a killed run resumes from here
    t0 = time.perf_counter()

    def fit(kind: str, **extra: Any) -> None:
        out = work / kind.split("-")[0]
        if not (out / "run.json").is_file():
            train(TrainConfig(model=_TIMM_NAME, kind=kind, out=str(out), model_kwargs=DEMO_MODEL_KWARGS,
                              progress=progress, resume=(out / "checkpoint.pt").is_file(),
                              **DEMO_TRAIN, **extra))

    fit("vit")
    vit, _ = load_run(work / "vit")
    ds = build_dataset("synthetic", "train", 32, **DEMO_TRAIN["data_kwargs"], **model_normalisation(vit))
    build_groundtruth(vit, ds, work / "groundtruth", alpha=DEMO_ALPHA, beta=DEMO_BETA, batch_size=256,
                      progress=progress)  # resumes an unfinished store
    fit("winft-paper", groundtruth=str(work / "groundtruth"))
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
    from .analysis import analyze
    from .cli import main
    from .data import SyntheticShapes
    from .training import load_run
    from .training.sources import model_normalisation

    out = Path(out)
    models = Path(models) if models is not None else demo_models_dir()
    if not (models / "vit" / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no demo models in {models}: regenerate them with `patchfield demo --train-models {models}`"
        )
    vit, _ = load_run(models / "vit")
    claimed = json.loads((models / "metrics.json").read_text())
    val = SyntheticShapes(_VAL_IMAGES, image_size=32, split="val", **model_normalisation(vit))
    accuracy = {name: _evaluate(models / name) for name in ("vit", "winft")}

    picks = list(range(num_images))
    images_dir = out / "images"
    paths = []
    for i in picks:
        paths.append(images_dir / f"val_{i:03d}.png")
        _save_png(val.raw_image(i), paths[-1])
        _save_png(val.object_mask(i).numpy().astype(np.uint8) * 255, images_dir / f"val_{i:03d}_mask.png")
    vit_dir, winft_dir = str(models / "vit"), str(models / "winft")
    figure_args = ["figures", *map(str, paths), "--model", vit_dir, "--alpha", str(alpha), "--beta", str(beta),
                   "--winft-model", winft_dir, "--out", str(out / "figures")]
    for i in picks:
        figure_args += ["--mask", str(images_dir / f"val_{i:03d}_mask.png")]
    if main(figure_args) != 0:
        raise RuntimeError("patchfield figures failed (see the messages above)")
    if main(["explore", str(paths[0]), "--model", vit_dir, "--alpha", str(alpha), "--beta", str(beta),
             "--out", str(out / "explorer.html")]) != 0:
        raise RuntimeError("patchfield explore failed (see the messages above)")

    x = torch.stack([val[i][0] for i in picks])
    res = analyze(vit, x, alpha, beta)
    for j, path in enumerate(paths):
        write_json_atomic(out / "figures" / path.stem / "fields.json", {"image": str(path), **res.to_json(j)})
    summary = {
        "model": {"timm": _TIMM_NAME, **DEMO_MODEL_KWARGS},
        "val_top1": {k: round(v["top1"], 4) for k, v in accuracy.items()},
        "claimed_top1": {k: claimed[k]["top1"] for k in ("vit", "winft")},
        "alpha": alpha, "beta": beta, "grid": [res.grid.height, res.grid.width],
        "eo_analysed_images": res.expected_interactions(), "eo_full": res.grid.n ** 2,
        "winft_eo_val": accuracy["winft"]["eo"],
        "explorer": str(out / "explorer.html"), "figures": str(out / "figures"),
    }
    write_json_atomic(out / "summary.json", summary)
    return summary
