"""Content hashes that say whether two runs used the same inputs: weights, files, data sets."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["dataset_fingerprint", "file_hash", "weights_hash"]


def weights_hash(weights: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """A short SHA-256 of a model's (or a state dict's) parameters and buffers: names, dtypes, shapes and values.

    Two models hash alike exactly when their state dicts are equal, bit for bit.

    >>> from torch import nn
    >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    >>> _ = b.load_state_dict(a.state_dict())
    >>> weights_hash(a) == weights_hash(b), weights_hash(a) == weights_hash(nn.Linear(2, 2))
    (True, False)
    """
    sd = weights.state_dict() if isinstance(weights, nn.Module) else weights
    h = hashlib.sha256()
    for name in sorted(sd):
        t = sd[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        t = t.to("cpu").contiguous()
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """A short SHA-256 of a file's bytes (the concatenated sorted files of a folder)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}\n".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
    return h.hexdigest()[:16]


def dataset_fingerprint(dataset: Dataset) -> str:
    """The data set's own ``fingerprint()``, else a hash of its type and length."""
    fp = getattr(dataset, "fingerprint", None)
    if callable(fp):
        return str(fp())
    if fp is not None:
        return str(fp)
    return hashlib.sha256(f"{type(dataset).__name__}|{len(dataset)}".encode()).hexdigest()[:16]
