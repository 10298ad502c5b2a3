"""Deterministic, resumable data order for training.

The training data is one stream of micro-batches over epochs. Epoch ``e`` shuffles the data set
with a generator seeded by ``(seed, e)``; process ``r`` of ``w`` takes every ``w``-th image of
that order and cuts it into micro-batches (an epoch's tail that fills no batch on every process
is left out). So the stream depends on the seed alone, and a run resumed at micro-batch ``m``
continues with exactly the batches an uninterrupted run would have used.

Items are fetched with ``(epoch, index)`` keys, and every fetch seeds the random generators
(torch, numpy, ``random``) from the seed and its keys, so random augmentation gives the same
pixels whichever worker process renders the item, and whether or not the run was resumed.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

__all__ = ["EpochBatchSampler", "SeededItems", "batches_per_epoch", "make_loader"]


def batches_per_epoch(num_items: int, batch_size: int, world_size: int = 1) -> int:
    """Micro-batches each process gets per epoch: ``num_items // (batch_size · world_size)``."""
    return int(num_items) // (int(batch_size) * int(world_size))


def epoch_order(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch ``epoch``: a permutation of ``range(num_items)`` fixed by ``(seed, epoch)``."""
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(int(num_items), generator=g)


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Micro-batches of ``(epoch, index)`` keys for one process, from micro-batch ``start`` on.

    Args:
        num_items: length of the data set.
        batch_size: items per micro-batch.
        seed: fixes every epoch's order.
        rank, world_size: this process and the number of processes.
        start: index of the first micro-batch in the stream (``0`` for a fresh run).
        stop: index one past the last micro-batch.

    >>> s = EpochBatchSampler(10, 2, seed=0, start=4, stop=7)   # 5 batches per epoch
    >>> [len(b) for b in s], [b[0][0] for b in s]
    ([2, 2, 2], [0, 1, 1])
    """

    def __init__(
        self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
        start: int = 0, stop: int | None = None,
    ) -> None:
        self.num_items, self.batch_size, self.seed = int(num_items), int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.per_epoch = batches_per_epoch(num_items, batch_size, world_size)
        if self.per_epoch < 1:
            raise ValueError(
                f"a data set of {num_items} images fills no batch of {batch_size} on each of {world_size} "
                "process(es): use a smaller --batch-size or more data"
            )
        self.start = int(start)
        self.stop = int(stop) if stop is not None else self.start + self.per_epoch
        if not 0 <= self.start <= self.stop:
            raise ValueError(f"need 0 <= start <= stop, got {start}, {stop}")

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        m = self.start
        while m < self.stop:
            epoch, first = divmod(m, self.per_epoch)
            order = epoch_order(self.num_items, self.seed, epoch)
            mine = order[self.rank::self.world_size][: self.per_epoch * self.batch_size].tolist()
            for b in range(first, self.per_epoch):
                if m >= self.stop:
                    return
                chunk = mine[b * self.batch_size:(b + 1) * self.batch_size]
                yield [(epoch, i) for i in chunk]
                m += 1


def _item_seed(seed: int, keys: Sequence[tuple[int, int]]) -> int:
    data = np.asarray([seed, *[k for key in keys for k in key]], dtype=np.int64).tobytes()
    return zlib.crc32(data) ^ (zlib.adler32(data) << 32)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch, numpy and ``random``; in the main process restore their states afterwards."""
    restore = get_worker_info() is None
    if restore:
        saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        if restore:
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])


class SeededItems(Dataset):
    """Fetch ``dataset`` items by ``(epoch, index)`` keys with the random generators seeded from the keys.

    Batched fetches (``__getitems__``) use the inner data set's batched path when it has one.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        with _seeded(_item_seed(self.seed, [key])):
            return self.dataset[key[1]]

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list[Any]:
        with _seeded(_item_seed(self.seed, keys)):
            getitems = getattr(self.dataset, "__getitems__", None)
            indices = [k[1] for k in keys]
            return list(getitems(indices)) if getitems is not None else [self.dataset[i] for i in indices]


def make_loader(
    dataset: Any, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1, start: int = 0,
    stop: int | None = None, workers: int = 0, pin_memory: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over the micro-batch stream ``[start, stop)`` (see :class:`EpochBatchSampler`).

    Unreadable images (``None`` items) are dropped from their batch; a batch with none left is ``None``.

    The loader has its own generator, so creating it never draws from the global torch RNG
    (which a resumed run must find exactly as it was saved).
    """
    sampler = EpochBatchSampler(len(dataset), batch_size, seed, rank, world_size, start, stop)
    g = torch.Generator()
    g.manual_seed(int(seed))
    from ..data.registry import collate_skip

    return DataLoader(
        SeededItems(dataset, seed), batch_sampler=sampler, num_workers=int(workers), pin_memory=pin_memory,
        generator=g, persistent_workers=False, collate_fn=collate_skip,
    )
