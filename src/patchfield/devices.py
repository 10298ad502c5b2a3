"""The one device parser: ``--device`` strings to ``torch.device``, with a one-line error when it is missing.

Every subcommand and library entry point that takes a device goes through :func:`parse_device`
(what the user named) and :func:`resolve_device` (that, or the default, with the index a CUDA
process must use: ``torch.cuda.set_device`` needs one).
"""

from __future__ import annotations

import os

import torch

__all__ = ["parse_device", "resolve_device", "local_rank"]

_KINDS = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def parse_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a ``torch.device`` that exists on this machine.

    ``cuda`` without an index stays without one (see :func:`resolve_device` for the index).

    Raises:
        ValueError: one line saying what to pass instead: not a device name, CUDA (or MPS) not
            available here, or a CUDA index past the devices this machine has.

    >>> parse_device("cpu")
    device(type='cpu')
    """
    text = str(name).strip()
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device {text!r} is not a device: use cpu, cuda, cuda:N or mps ({e})") from None
    if device.type not in _KINDS:
        raise ValueError(f"--device {text!r}: patchfield runs on cpu, cuda, cuda:N or mps, not {device.type}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {text}: CUDA is not available on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"--device {text}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps":
        if not _mps_available():
            raise ValueError(f"--device {text}: MPS (Apple GPU) is not available here; use --device cpu")
    elif device.index not in (None, 0):
        raise ValueError(f"--device {text}: the CPU has no index; use --device cpu")
    return device


def local_rank() -> int:
    """``LOCAL_RANK`` set by ``torchrun`` (0 outside it)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError(f"LOCAL_RANK={os.environ['LOCAL_RANK']!r} is not an integer") from None


def resolve_device(name: str | torch.device | None = None, rank: int | None = None) -> torch.device:
    """The device this process runs on.

    ``None``: ``cuda:<local rank>`` when CUDA is available, else ``cpu``. ``cuda`` without an
    index: ``cuda:<local rank>`` (modulo the device count), so each ``torchrun`` process takes
    its own GPU. Anything else: :func:`parse_device`.

    Args:
        name: what the user asked for (``--device``), or ``None``.
        rank: the local rank; default ``LOCAL_RANK`` from the environment.
    """
    if name is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        name = "cuda"
    device = parse_device(name)
    if device.type == "cuda" and device.index is None:
        r = local_rank() if rank is None else int(rank)
        device = torch.device("cuda", r % torch.cuda.device_count())
    return device
