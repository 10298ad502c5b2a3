"""Resumable training checkpoints and the final run layout (``model.safetensors`` + ``run.json``).

A run folder holds:

- ``checkpoint.pt``: the latest resumable state (model, optimiser, scheduler, step, every
  process's RNG states, the data position), replaced atomically;
- ``model.safetensors``: the final model's state dict alone;
- ``run.json``: what is needed to rebuild the model (timm name, kind, kwargs, grid, classes);
- ``log.jsonl``: one JSON line per logged step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..runs import MODEL_FILE, RUN_FILE, RUN_FORMAT, read_run_info  # noqa: F401 (read_run_info: for study/reproduce.py)
from ..utils.io import atomic_write, write_json_atomic
from .build import unwrap

__all__ = [
    "CHECKPOINT", "isolated_rng", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "export_run",
]

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """This process's random states: torch (CPU and CUDA), numpy and Python's ``random``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Give the caller its random states back after the block (or decorated function), also on errors.

    Training seeds the process's global generators (weight initialisation, dropout and the data
    order follow ``--seed``); the caller's torch, CUDA, numpy and ``random`` states are restored
    afterwards, so ``train()`` never reseeds its caller's RNG.
    """
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a training state atomically: a partial file never replaces a complete one."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training state written by :func:`save_checkpoint` (tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: nothing to resume; start the run without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"could not read checkpoint {path}: {e}") from e


def export_run(out: str | Path, model: nn.Module, info: dict[str, Any]) -> None:
    """Write ``model.safetensors`` (the model's state dict alone) and ``run.json``, both atomically."""
    from safetensors.torch import save_file

    out = Path(out)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}
    with atomic_write(out / MODEL_FILE) as tmp:
        save_file(sd, str(tmp))
    write_json_atomic(out / RUN_FILE, {"format": RUN_FORMAT, **info})
