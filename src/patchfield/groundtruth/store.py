"""The on-disk ground-truth store (docs/spec.md §6): shards of compact fields plus a manifest.

Layout of a store folder::

    manifest.json        written last: the store is complete when it exists
    shard-00000.npz      images [0, shard_size)
    shard-00001.npz      images [shard_size, 2 * shard_size) ...

Each shard is an uncompressed ``.npz`` written atomically, holding for its images ``bounds``
(``[b, N, 4]`` window bounds left, right, top, bottom; ``uint8``, ``uint16`` for grids wider than
256), ``dropped`` (``[b, ceil(N / 8)]`` packed ``D``), ``interactions`` (``int64 [b]``: ``Σ_p |S_p|``,
this image's share of ``E_O``), ``window_interactions`` (``O`` of the windows alone), ``labels``,
``predicted`` (the model's top-1, ``-1`` without logits), ``valid`` (``False`` for an image that
could not be read: its field is empty and must not be used) and ``meta`` (JSON text: the settings the
shard was computed with, checked on resume).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..encoding import FieldCode, decode_field
from ..grid import Grid
from ..introspect import model_grid
from ..utils.io import atomic_write

__all__ = ["FORMAT", "GroundTruthStore", "StoreMismatchError", "read_shard", "read_shard_meta",
           "shard_name", "write_shard"]

FORMAT = "patchfield-groundtruth"
VERSION = 1
MANIFEST = "manifest.json"
#: Settings every shard must share with the manifest: what determines a field.
_FINGERPRINT_KEYS = ("alpha", "beta", "fingerprint", "model", "weights", "model_config", "shard_size", "num_images")
SHARD_KEYS = ("bounds", "dropped", "interactions", "window_interactions", "labels", "predicted", "valid")


class StoreMismatchError(ValueError):
    """A ground-truth store used with a data set or model it was not built for."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def write_shard(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write one shard atomically (a killed writer never leaves a file that looks complete)."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)


def read_shard(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` of one shard.

    Raises:
        ValueError: the file is not a ground-truth shard.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in SHARD_KEYS}
            meta = json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable ground-truth shard ({e})") from e
    return arrays, meta


def read_shard_meta(path: str | Path) -> dict[str, Any]:
    """The settings a shard was computed with (reads only its ``meta`` member)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not all(k in z.files for k in SHARD_KEYS):
                raise KeyError("missing arrays")
            return json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable ground-truth shard ({e})") from e


class GroundTruthStore:
    """Read a finished ground-truth store.

    Shards are loaded into memory on first use of a per-image array (``4·N + N/8`` bytes per image).

    Args:
        path: the store folder (holding ``manifest.json``).

    Raises:
        FileNotFoundError: no manifest (the build did not finish: run it again with the same arguments
            to resume), or a shard it lists is missing.
        ValueError: the manifest is not a ground-truth manifest.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            partial = sorted(self.path.glob("shard-*.npz")) if self.path.is_dir() else []
            hint = (f"; {len(partial)} shard(s) exist: the build did not finish, run `patchfield groundtruth` again "
                    "with the same arguments to resume it") if partial else ""
            raise FileNotFoundError(f"no ground-truth store at {self.path} (no {MANIFEST}){hint}")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{manifest} is not valid JSON ({e})") from e
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest} is not a patchfield ground-truth manifest")
        for shard in self.manifest["shards"]:
            if not (self.path / shard["file"]).is_file():
                missing = self.path / shard["file"]
                raise FileNotFoundError(f"ground-truth shard {missing} listed in {manifest} is missing")
            self._check_shard_fingerprint(shard["file"], read_shard_meta(self.path / shard["file"]))
        self._arrays: dict[str, np.ndarray] | None = None

    # -- settings -------------------------------------------------------------------------------
    @property
    def grid(self) -> Grid:
        return Grid(*self.manifest["grid"])

    @property
    def alpha(self) -> float:
        return float(self.manifest["alpha"])

    @property
    def beta(self) -> float:
        return float(self.manifest["beta"])

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the data set the store was built on."""
        return str(self.manifest["dataset"]["fingerprint"])

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"])

    def __len__(self) -> int:
        return int(self.manifest["num_images"])

    def __repr__(self) -> str:
        g = self.grid
        return (f"GroundTruthStore({str(self.path)!r}, images={len(self)}, grid={g.height}x{g.width}, "
                f"alpha={self.alpha}, beta={self.beta})")

    # -- per-image arrays -------------------------------------------------------------------------
    def _load(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            parts: dict[str, list[np.ndarray]] = {k: [] for k in SHARD_KEYS}
            expected = 0
            for shard in self.manifest["shards"]:
                arrays, meta = read_shard(self.path / shard["file"])
                self._check_shard_fingerprint(shard["file"], meta)
                if meta["start"] != expected or meta["stop"] - meta["start"] != len(arrays["valid"]):
                    raise ValueError(f"shard {shard['file']} covers images {meta['start']}..{meta['stop']}, "
                                     f"expected to start at {expected}: the store is inconsistent, rebuild it")
                expected = meta["stop"]
                for k in SHARD_KEYS:
                    parts[k].append(arrays[k])
            if expected != len(self):
                raise ValueError(f"shards of {self.path} hold {expected} images, the manifest says {len(self)}")
            self._arrays = {k: np.concatenate(v) for k, v in parts.items()}
        return self._arrays

    def _check_shard_fingerprint(self, name: str, meta: dict[str, Any]) -> None:
        """``ValueError`` unless the shard was computed with the manifest's model, weights, data and rates."""
        differ = [k for k in _FINGERPRINT_KEYS if k in self.manifest and meta.get(k) != self.manifest[k]]
        if differ:
            listed = ", ".join(f"{k} {meta.get(k)!r} vs {self.manifest[k]!r}" for k in differ)
            raise ValueError(f"shard {name} of {self.path} was not computed with the manifest's inputs ({listed}): "
                             "the store mixes two builds; rebuild it (`patchfield groundtruth` into a new folder)")

    @property
    def interactions(self) -> np.ndarray:
        """``int64 [n]``: per image, ``Σ_p |S_p|`` (``O`` of the windows when ``D`` is empty)."""
        return self._load()["interactions"]

    @property
    def window_interactions(self) -> np.ndarray:
        """``int64 [n]``: per image, ``O`` of the windows alone (Eq. 5)."""
        return self._load()["window_interactions"]

    @property
    def labels(self) -> np.ndarray:
        return self._load()["labels"]

    @property
    def predicted(self) -> np.ndarray:
        """The model's top-1 class per image (``-1`` for models without logits)."""
        return self._load()["predicted"]

    @property
    def valid(self) -> np.ndarray:
        """``bool [n]``: ``False`` for images that could not be read (no field)."""
        return self._load()["valid"]

    def expected_interactions(self, dip: bool = True) -> float:
        """``E_O`` over the valid images: ``Σ_p |S_p|`` (with ``D``), or the windows' ``O`` alone with
        ``dip=False`` (what an AWD-ViT without DIP attends with)."""
        v = self.valid
        counts = self.interactions if dip else self.window_interactions
        return float(counts[v].astype(np.float64).mean()) if v.any() else float("nan")

    def codes(self, indices) -> FieldCode:
        """The compact fields of ``indices`` (an int, a sequence or a slice)."""
        a = self._load()
        idx = np.arange(len(self))[indices] if isinstance(indices, slice) else np.atleast_1d(np.asarray(indices))
        return FieldCode(bounds=a["bounds"][idx], dropped=a["dropped"][idx], grid=self.grid)

    def masks(self, indices, device: torch.device | str | None = None,
              dip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(field_mask bool [B, N, N], dropped bool [B, N])`` of ``indices``, decoded (docs/spec.md §6 ``w_gt``).

        With ``dip=False`` the mask is the windows' alone (AWD without DIP, docs/spec.md §7) and ``dropped`` is
        all ``False``.
        """
        field = decode_field(self.codes(indices), device=device)
        if not dip:
            return field.windows.mask(), torch.zeros_like(field.dropped)
        return field.mask(), field.dropped

    # -- checks ---------------------------------------------------------------------------------
    def check_grid(self, grid: Grid | tuple[int, int]) -> None:
        """Raise :class:`StoreMismatchError` unless ``grid`` is the store's grid."""
        g, mine = Grid.coerce(grid), self.grid
        if g != mine:
            raise StoreMismatchError(
                f"ground-truth store {self.path} has a {mine.height}x{mine.width} patch grid but the model's grid is "
                f"{g.height}x{g.width}: build the store with a ViT of the same patch and image size"
            )

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise :class:`StoreMismatchError` unless ``model`` sees the store's patch grid."""
        self.check_grid(model_grid(model))

    def check_dataset(self, dataset) -> None:
        """Raise :class:`StoreMismatchError` unless ``dataset`` is the one the store was built on.

        Compares the length and, when the data set has one, its ``fingerprint()`` (file list, labels,
        image size and normalisation, or the synthetic set's parameters).
        """
        if len(dataset) != len(self):
            raise StoreMismatchError(
                f"ground-truth store {self.path} holds {len(self)} images but the data set has {len(dataset)}: "
                "build the store on this data set and split (`patchfield groundtruth`)"
            )
        fp = getattr(dataset, "fingerprint", None)
        fp = fp() if callable(fp) else fp
        if fp is not None and str(fp) != self.fingerprint:
            raise StoreMismatchError(
                f"ground-truth store {self.path} was built on another data set (fingerprint {self.fingerprint}, "
                f"this one {fp}; stored: {self.manifest['dataset']}): build the store on this data set, split, "
                "image size and normalisation"
            )
