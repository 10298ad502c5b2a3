"""Build a ground-truth store: every image's responsive field (docs/spec.md §6) from a trained ViT.

The data set is cut into shards of ``shard_size`` consecutive images; shard ``k`` is written
atomically to ``shard-<k>.npz`` and never recomputed once it exists, so a killed run resumes where it
stopped (only the unfinished shards' work is redone). Under ``torchrun`` (``WORLD_SIZE > 1``) each rank
takes the shards ``k ≡ rank (mod world size)``; after a barrier rank 0 checks every shard and writes
``manifest.json``. Batches are the same whatever the number of ranks, so the store is too.
"""

from __future__ import annotations

import datetime
import json
import logging
import queue
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..analysis import analyze
from ..checks import check_rates
from ..encoding import encode_field
from ..errors import InputError, one_line
from ..grid import Grid
from ..introspect import input_spec, model_grid
from ..utils.distributed import distributed_env
from ..utils.fingerprint import dataset_fingerprint, weights_hash
from ..utils.io import write_json_atomic
from ..utils.lock import FolderLock, FolderLockedError
from .store import (
    FORMAT,
    MANIFEST,
    SHARD_KEYS,
    VERSION,
    GroundTruthStore,
    read_shard,
    read_shard_meta,
    shard_name,
    write_shard,
)

__all__ = ["build_groundtruth", "model_config"]

log = logging.getLogger("patchfield.groundtruth")


def model_config(model: torch.nn.Module) -> dict[str, Any]:
    """What, besides its weights, fixes a model's fields: its class, patch grid, input size and normalisation."""
    spec = input_spec(model)
    grid = model_grid(model)
    return {"class": type(model).__name__, "grid": [grid.height, grid.width], "input_size": list(spec["size"]),
            "mean": [round(float(m), 6) for m in spec["mean"]], "std": [round(float(s), 6) for s in spec["std"]]}


def _lock_store(out: Path, rank: int, world: int) -> FolderLock | None:
    """Rank 0 locks the store folder (removing temporaries of killed writers); every rank fails alike when it
    cannot."""
    lock, error = None, None
    if rank == 0:
        try:
            lock = FolderLock(out).acquire()
        except (FolderLockedError, OSError) as e:
            error = e
    if world > 1:
        import torch.distributed as dist

        said = [one_line(error) if error is not None else None]
        dist.broadcast_object_list(said, src=0)
        if said[0] is not None and error is None:
            raise FolderLockedError(said[0])
    if error is not None:
        raise error
    return lock


def _model_name(model: torch.nn.Module) -> str:
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict) and cfg.get("architecture"):
            return str(cfg["architecture"])
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_name_or_path", None):
        return str(config._name_or_path)
    return type(model).__name__


class _Batches(Dataset):
    """Item ``k`` is the ``k``-th batch of ``indices``: ``(indices, images, labels, ok)``.

    Loading whole batches lets worker processes use a data set's vectorised ``__getitems__`` and
    keeps the batch composition fixed (it depends on ``shard_size`` and ``batch_size`` only).
    Items that fail to load (``None``) are marked ``ok = False`` and left out of ``images``.
    """

    def __init__(self, dataset: Dataset, batches: list[list[int]]) -> None:
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        idx = self.batches[k]
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(idx) if getitems is not None else [self.dataset[i] for i in idx]
        ok = [item is not None for item in items]
        kept = [item for item in items if item is not None]
        images = torch.stack([item[0] for item in kept]) if kept else torch.empty(0)
        labels = [int(item[1]) for item in items if item is not None]
        labels_all = np.full(len(idx), -1, dtype=np.int64)
        labels_all[np.asarray(ok, dtype=bool)] = labels
        return np.asarray(idx, dtype=np.int64), images, labels_all, np.asarray(ok, dtype=bool)


def _as_is(item):
    """Collate function of :class:`_Batches` items: already batched, numpy arrays kept as they are."""
    return item


class _ShardWriter:
    """Writes shards on one background thread, so the next batches' forward overlaps the writing.

    At most ``depth`` finished shards wait in the queue (bounded memory). A failed write is raised
    on the next :meth:`put` or at :meth:`close`; a killed process leaves no partial shard, since
    every shard is written atomically.
    """

    def __init__(self, depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="patchfield-shard-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None:
                try:
                    write_shard(*job)
                except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self._raise()
        self._queue.put((path, arrays, meta))

    def close(self) -> None:
        """Wait for every queued shard; raise the first write error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def __enter__(self) -> _ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._thread.is_alive():  # an error in the caller wins; still stop the thread
            self._queue.put(None)
            self._thread.join()


def _shard_meta(settings: dict[str, Any], index: int, start: int, stop: int) -> dict[str, Any]:
    return {**settings, "shard": index, "start": start, "stop": stop}


def _existing_shard_ok(path: Path, meta: dict[str, Any]) -> bool:
    """``True`` when ``path`` is a finished shard of these settings; raise when it is one of others."""
    if not path.is_file():
        return False
    try:
        theirs = read_shard_meta(path)
    except ValueError:
        return False  # unreadable: recompute it
    differ = {k: (theirs.get(k), v) for k, v in meta.items() if k != "grid" and theirs.get(k) != v}
    if differ:
        listed = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in differ.items())
        raise ValueError(f"cannot resume: {path} was computed with other settings ({listed}); run with the same "
                         "model, weights, data and settings, or use another output folder")
    return True


@torch.no_grad()
def build_groundtruth(
    model: torch.nn.Module,
    dataset: Dataset,
    out_dir: str | Path,
    alpha: float,
    beta: float,
    *,
    batch_size: int = 64,
    shard_size: int = 4096,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    amp: bool = False,
    model_name: str | None = None,
    dataset_name: str | None = None,
    progress: bool = True,
) -> GroundTruthStore:
    """Run ``model`` over ``dataset`` and store every image's responsive field (docs/spec.md §6).

    Args:
        model: a trained timm or Hugging Face ViT (put in eval mode and moved to ``device``).
        dataset: items ``(image [3, H, W], label)``, or ``None`` for an unreadable image (recorded as
            invalid, counted and named in the manifest).
        out_dir: the store folder; an unfinished store there with the same settings is resumed.
        alpha, beta: window and DIP rates (docs/spec.md §3, §4).
        batch_size: images per forward pass.
        shard_size: images per shard (the unit of resumption and of work across ranks).
        num_workers: data-loading processes.
        device: ``cpu``, ``cuda``, ``cuda:1`` ...; default the local GPU when there is one
            (:func:`patchfield.devices.resolve_device`).
        amp: run the model's forward under bf16 autocast (the statistics stay in float); recorded
            in the store's settings, so a store is never resumed with the other setting.
        model_name, dataset_name: recorded in the manifest (default: from the model / data set).
        progress: show a progress bar (rank 0).

    Returns:
        The finished :class:`GroundTruthStore` (on every rank).

    Raises:
        ValueError: bad rates or sizes, or ``out_dir`` holds a store built with other settings.
    """
    check_rates(alpha, beta)
    if int(batch_size) < 1 or int(shard_size) < 1 or int(num_workers) < 0:
        raise ValueError(f"batch_size and shard_size must be >= 1 and num_workers >= 0; got {batch_size}, "
                         f"{shard_size}, {num_workers}")
    n = len(dataset)
    if n == 0:
        raise ValueError("the data set is empty")
    out = Path(out_dir)
    with ExitStack() as stack:
        env = stack.enter_context(distributed_env(device, timeout=datetime.timedelta(hours=6)))
        dev, rank, world = env.device, env.rank, env.world_size
        lock = _lock_store(out, rank, world)
        if lock is not None:
            stack.callback(lock.release)
        model = model.eval().to(dev)
        settings = {
            "format": FORMAT, "version": VERSION, "alpha": float(alpha), "beta": float(beta),
            "shard_size": int(shard_size), "num_images": n, "fingerprint": dataset_fingerprint(dataset),
            "model": model_name or _model_name(model), "weights": weights_hash(model),
            "model_config": model_config(model),
            "amp": "bf16" if amp else None,  # None matches the shards of stores written before the option
        }
        manifest_path = out / MANIFEST
        if manifest_path.is_file():
            done = json.loads(manifest_path.read_text())
            mismatch = {k: (done.get(k), v) for k, v in settings.items() if k in done and done[k] != v}
            if done.get("dataset", {}).get("fingerprint") != settings["fingerprint"]:
                mismatch["fingerprint"] = (done.get("dataset", {}).get("fingerprint"), settings["fingerprint"])
            if mismatch:
                listed = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in mismatch.items())
                raise ValueError(f"{out} already holds a finished store with other settings ({listed}); "
                                 "use another output folder")
            env.barrier()
            return GroundTruthStore(out)
        out.mkdir(parents=True, exist_ok=True)
        num_shards = -(-n // int(shard_size))
        mine = [k for k in range(num_shards) if k % world == rank]
        finished = set()
        for k in range(num_shards):  # every rank checks every shard, so a mismatch stops all ranks alike
            start, stop = k * shard_size, min((k + 1) * shard_size, n)
            if _existing_shard_ok(out / shard_name(k), _shard_meta(settings, k, start, stop)):
                finished.add(k)
        todo, done_images = [], 0
        for k in mine:
            start, stop = k * shard_size, min((k + 1) * shard_size, n)
            if k in finished:
                done_images += stop - start
            else:
                todo.append((k, start, stop))  # (temporaries of killed writers went when rank 0 took the lock)
        total = sum(min((k + 1) * shard_size, n) - k * shard_size for k in mine)
        bar = tqdm(total=total, initial=done_images, unit="img", desc="groundtruth", file=sys.stderr,
                   disable=not progress or rank != 0, dynamic_ncols=True)
        batches = [list(range(b, min(b + batch_size, stop))) for _, start, stop in todo
                   for b in range(start, stop, batch_size)]
        loader = DataLoader(_Batches(dataset, batches), batch_size=None, num_workers=num_workers,
                            collate_fn=_as_is, pin_memory=dev.type == "cuda")
        it = iter(loader)
        with _ShardWriter() as writer:  # the next shard's forward overlaps this one's writing
            for k, start, stop in todo:
                parts: dict[str, list] = {key: [] for key in SHARD_KEYS}
                grid = None
                for _ in range(-(-(stop - start) // batch_size)):
                    idx, images, labels, ok = next(it)
                    arrays, batch_grid = _analyse_batch(model, images, ok, alpha, beta, dev, amp)
                    grid = batch_grid or grid
                    for key in ("bounds", "dropped", "interactions", "window_interactions", "predicted"):
                        parts[key].append(arrays[key] if arrays is not None else None)  # None: filled in below
                    parts["labels"].append(labels)
                    parts["valid"].append(ok)
                    bar.update(len(idx))
                grid = grid if grid is not None else model_grid(model)  # a shard with no readable image
                arrays = _finish_shard(parts, grid)
                writer.put(out / shard_name(k), arrays,
                           _shard_meta(settings, k, start, stop) | {"grid": [grid.height, grid.width]})
        bar.close()
        env.barrier()
        if rank == 0:
            _write_manifest(out, settings, num_shards, n, dataset_name or getattr(dataset, "name", None), dataset)
        env.barrier()
        return GroundTruthStore(out)


def _analyse_batch(model: torch.nn.Module, images: torch.Tensor, ok: np.ndarray, alpha: float, beta: float,
                   dev: torch.device, amp: bool = False) -> tuple[dict[str, np.ndarray] | None, Grid | None]:
    """Per-image shard arrays of one batch (``ok`` marks the readable images, the only ones in ``images``).

    Returns ``(None, None)`` when no image of the batch could be read.
    """
    if not ok.any():
        return None, None
    res = analyze(model, images.to(dev, non_blocking=True), alpha, beta, amp=amp)
    if res.logits is not None and not bool(torch.isfinite(res.logits).all()):
        raise InputError("the model's output holds NaN or Inf values: its weights or these inputs are broken, so "
                         "no field, predicted class or E_O can be stored")
    code = encode_field(res.field)
    b = len(ok)
    out = {
        "bounds": np.zeros((b, *code.bounds.shape[1:]), dtype=code.bounds.dtype),
        "dropped": np.zeros((b, *code.dropped.shape[1:]), dtype=np.uint8),
        "interactions": np.zeros(b, dtype=np.int64),
        "window_interactions": np.zeros(b, dtype=np.int64),
        "predicted": np.full(b, -1, dtype=np.int64),
    }
    out["bounds"][ok], out["dropped"][ok] = code.bounds, code.dropped
    out["interactions"][ok] = res.interactions().cpu().numpy()
    out["window_interactions"][ok] = res.windows.interactions().cpu().numpy()
    predicted = res.predicted_classes()  # None for a model without a classifier head
    if predicted is not None:
        out["predicted"][ok] = predicted.cpu().numpy()
    return out, res.grid


def _finish_shard(parts: dict[str, list], grid: Grid) -> dict[str, np.ndarray]:
    """Concatenate a shard's batches; batches without a readable image get empty fields."""
    batches_sizes = [len(v) for v in parts["valid"]]
    n_patches = grid.n
    dtype = np.uint8 if max(grid.width, grid.height) <= 256 else np.uint16
    fill = {
        "bounds": lambda b: np.zeros((b, n_patches, 4), dtype=dtype),
        "dropped": lambda b: np.zeros((b, -(-n_patches // 8)), dtype=np.uint8),
        "interactions": lambda b: np.zeros(b, dtype=np.int64),
        "window_interactions": lambda b: np.zeros(b, dtype=np.int64),
        "predicted": lambda b: np.full(b, -1, dtype=np.int64),
    }
    arrays = {}
    for key, chunks in parts.items():
        if key in fill:
            chunks = [fill[key](b) if c is None else c for c, b in zip(chunks, batches_sizes)]
        arrays[key] = np.concatenate(chunks)
    return arrays


def _write_manifest(out: Path, settings: dict[str, Any], num_shards: int, n: int, name: str | None,
                    dataset: Dataset) -> None:
    shards, failed, grid, total, valid_count = [], [], None, 0, 0
    for k in range(num_shards):
        path = out / shard_name(k)
        if not path.is_file():
            raise RuntimeError(f"shard {path} is missing after every rank finished; run again to complete it")
        arrays, meta = read_shard(path)
        if grid is None:
            grid = meta["grid"]
        elif grid != meta["grid"]:
            raise ValueError(f"shard {path} has grid {meta['grid']}, others {grid}: the model changed between runs")
        bad = np.nonzero(~arrays["valid"])[0] + meta["start"]
        failed.extend(int(i) for i in bad)
        total += int(arrays["interactions"][arrays["valid"]].sum())
        valid_count += int(arrays["valid"].sum())
        shards.append({"file": path.name, "start": meta["start"], "stop": meta["stop"],
                       "failed": int(len(bad))})
    names = []
    path_of = getattr(dataset, "path", None)
    if callable(path_of):
        names = [str(path_of(i)) for i in failed]
    if failed:
        log.warning("groundtruth: %d unreadable image(s) recorded as invalid (no field): %s", len(failed),
                    ", ".join(names) if names else ", ".join(map(str, failed)))
    manifest = {
        "format": FORMAT, "version": VERSION, "grid": grid, "num_patches": grid[0] * grid[1],
        "alpha": settings["alpha"], "beta": settings["beta"], "num_images": n,
        "dataset": {"name": name, "len": n, "fingerprint": settings["fingerprint"],
                    "split": getattr(dataset, "split", None)},
        "fingerprint": settings["fingerprint"], "model": settings["model"], "shard_size": settings["shard_size"],
        "weights": settings["weights"], "model_config": settings["model_config"],
        "shards": shards, "failed": failed, "failed_files": names,
        "expected_interactions": total / valid_count if valid_count else None,
        "bytes_per_image": grid[0] * grid[1] * 4 + -(-grid[0] * grid[1] // 8),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(out / MANIFEST, manifest)
