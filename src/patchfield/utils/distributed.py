"""Process-group set-up for ``torchrun``: one process per device, rank 0 writes files.

:func:`distributed_env` is the one place that joins a process group (training, evaluation and
ground truth use it). Without ``torchrun`` (no ``WORLD_SIZE`` above 1 in the environment)
everything runs in one process and no group is created. A group the caller already
initialised is used and left alone: only a group this helper created is destroyed on exit.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..devices import resolve_device

__all__ = ["DistEnv", "Sums", "all_gather_objects", "all_reduce_sum", "distributed_env", "sum_over_group"]

_S = TypeVar("_S", bound="Sums")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``; ``created``: whether
    :func:`distributed_env` initialised the process group (and will destroy it)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    created: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (nothing when alone); on nccl, on this process's GPU."""
        if not self.distributed:
            return
        if self.device.type == "cuda" and dist.get_backend() == "nccl":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer (set by torchrun)") from None


@contextmanager
def distributed_env(
    device: str | torch.device | None = None, timeout: datetime.timedelta | None = None
) -> Iterator[DistEnv]:
    """Join the ``torchrun`` process group (nccl on CUDA, gloo otherwise), or run alone; leave it on exit.

    Reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set by ``torchrun``. The device is
    :func:`patchfield.devices.resolve_device` of ``device`` (``cuda`` becomes ``cuda:<local rank>``)
    and is made the current CUDA device. A process group that is already initialised is used
    as it is and not destroyed.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``None`` (the local GPU when there is one).
        timeout: the process group's collective timeout (torch's default when ``None``).
    """
    world = _env_int("WORLD_SIZE", 1)
    local = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    created = False
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        dist.init_process_group(backend=backend, rank=_env_int("RANK", 0), world_size=world, **kwargs)
        created = True
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    try:
        yield DistEnv(rank=rank, world_size=world, local_rank=local, device=dev, created=created)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over all processes (identity when alone).

    On nccl the sum travels through this process's GPU and comes back on ``values``' device.
    """
    return sum_over_group(values, env.device) if env.distributed else values


def sum_over_group(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum a tensor over the processes of the initialised process group (identity without one); on nccl the sum
    travels through ``device`` (this process's GPU) and comes back on ``values``' device."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    home = values.device
    values = values.to(device if dist.get_backend() == "nccl" else home, copy=True)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.to(home)


class Sums:
    """Base of the dataclasses of named float sums (a training log interval's, an evaluation's): added field by
    field, and carried as one float64 vector in field order through all-reduces and checkpoints."""

    def __add__(self: _S, other: _S) -> _S:
        return type(self)(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def as_tensor(self) -> torch.Tensor:
        """float64 ``[fields]`` in field order."""
        return torch.tensor(astuple(self), dtype=torch.float64)

    @classmethod
    def from_tensor(cls: type[_S], values: torch.Tensor) -> _S:
        """The sums of :meth:`as_tensor`."""
        return cls(*(float(v) for v in values.tolist()))


def all_gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` when alone)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out
