"""The layout of a ``patchfield train`` run folder, and reading what it describes.

A finished run folder holds ``model.safetensors`` (the model's state dict alone, timm key
layout) and ``run.json`` (timm name, kind, kwargs, classes, image size, grid, store); during
training also ``checkpoint.pt`` and ``log.jsonl`` (:mod:`patchfield.training.checkpoint`).
This module only reads the description; :func:`patchfield.loading.load_run` rebuilds the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["MODEL_FILE", "RUN_FILE", "RUN_FORMAT", "is_run_directory", "read_run_info"]

MODEL_FILE = "model.safetensors"
RUN_FILE = "run.json"
RUN_FORMAT = "patchfield-run/1"


def is_run_directory(path: str | Path) -> bool:
    """A finished ``patchfield train`` run folder (``run.json`` + ``model.safetensors``)."""
    p = Path(path)
    return (p / RUN_FILE).is_file() and (p / MODEL_FILE).is_file()


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a finished run folder.

    Raises:
        FileNotFoundError: the folder is not a finished run.
        ValueError: ``run.json`` is not a patchfield run description (the message names it).
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not is_run_directory(run_dir):
        raise FileNotFoundError(
            f"{run_dir} is not a finished run: it needs {RUN_FILE} and {MODEL_FILE} (written at the end of "
            "`patchfield train`; resume an unfinished run with --resume)"
        )
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}): restore it, or train the run again") from e
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        fmt = info.get("format") if isinstance(info, dict) else None
        raise ValueError(f"{path} is not a patchfield run description (format {fmt!r})")
    return info
