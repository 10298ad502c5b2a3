"""COCO-format instance annotations as ``(image, object mask)`` pairs (the :mod:`patchfield.data.masks` protocol).

An image's object mask is the union of its instances' segmentations (``category`` restricts them).
Polygons are rasterised here by the pixel-centre rule (a pixel is inside when its centre ``(x + 0.5,
y + 0.5)`` is, even-odd); RLE segmentations, compressed or not, are decoded by ``pycocotools``
(``pip install 'patchfield[coco]'``). Images listed in the JSON but absent under ``root`` are skipped
and counted (``skipped["missing"]``): users often hold a subset.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..introspect import IMAGENET_MEAN, IMAGENET_STD
from ..preprocess import DEFAULT_CROP_PCT
from .masks import MaskedFiles

__all__ = ["CocoMasks", "polygon_mask", "rle_mask"]

_NEEDS_PYCOCOTOOLS = "this annotation file has RLE segmentations; decoding them needs pycocotools: " \
                     "pip install 'patchfield[coco]'"


def polygon_mask(polygon: Sequence[float], height: int, width: int) -> np.ndarray:
    """Rasterise one COCO polygon ``[x0, y0, x1, y1, ...]`` (pixel-edge coordinates) to bool ``[H, W]``.

    A pixel is inside when its centre is (even-odd rule), vectorised over rows and edges.

    >>> polygon_mask([1, 0, 3, 0, 3, 2, 1, 2], 3, 4).astype(int).tolist()
    [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return np.zeros((height, width), dtype=bool)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    yc = np.arange(height, dtype=np.float64)[:, None] + 0.5  # [H, 1] row centres
    crosses = (y0[None] <= yc) != (y1[None] <= yc)  # [H, K] half-open: each crossing counted once
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0[None] + (yc - y0[None]) * (x1 - x0)[None] / (y1 - y0)[None]
    rows, edges = np.nonzero(crosses)
    # the crossing toggles every pixel whose centre lies right of it: columns >= floor(x - 0.5) + 1
    cols = np.clip(np.floor(xs[rows, edges] - 0.5).astype(np.int64) + 1, 0, width)
    toggles = np.zeros((height, width + 1), dtype=np.int64)
    np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles, axis=1)[:, :width] % 2) == 1


def rle_mask(segmentation: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Decode a COCO RLE (``counts`` a string: compressed; a list: uncompressed) to bool ``[H, W]``.

    Raises:
        ImportError: pycocotools is not installed.
        ValueError: the RLE's ``size`` is not ``[height, width]``.
    """
    try:
        from pycocotools import mask as mask_utils
    except ImportError as e:
        raise ImportError(_NEEDS_PYCOCOTOOLS) from e
    size = [int(s) for s in segmentation.get("size", [])]
    if size != [height, width]:
        raise ValueError(f"an RLE segmentation has size {size} but its image is [{height}, {width}] (height, width)")
    counts = segmentation["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
    else:
        rle = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
    return np.asarray(mask_utils.decode(rle), dtype=bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _safe_file_name(name: Any) -> bool:
    """A ``file_name`` that stays under ``--data-root``: a non-empty relative path without ``..`` parts."""
    if not isinstance(name, str) or not name.strip():
        return False
    parts = Path(name.replace("\\", "/")).parts
    return not Path(name).is_absolute() and not name.startswith(("/", "\\")) and ".." not in parts


def _segmentation_problem(seg: Any) -> str | None:
    """Why a COCO ``segmentation`` is unusable, or ``None``: polygons are lists of at least 3 (x, y) number
    pairs; an RLE is a dict with ``counts`` (a string, or a list of whole numbers) and ``size`` [height, width]."""
    if isinstance(seg, dict):
        counts, size = seg.get("counts"), seg.get("size")
        if not (isinstance(counts, str) or (isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts))):
            return "an RLE segmentation without 'counts' (a string or a list of run lengths)"
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
            return "an RLE segmentation without 'size' [height, width]"
        return None
    if not isinstance(seg, list):
        return f"a segmentation that is neither polygons nor RLE ({type(seg).__name__})"
    for polygon in seg:
        if not (isinstance(polygon, list) and all(_is_number(v) and np.isfinite(v) for v in polygon)):
            return "a polygon that is not a list of numbers"
        if len(polygon) % 2 or len(polygon) < 6:
            return f"a polygon of {len(polygon)} numbers (it needs x, y pairs, at least 3 of them)"
    return None


def _load_json(path: Path) -> dict[str, Any]:
    """The instances JSON, checked entry by entry: every problem is a ``ValueError`` naming the file and the
    entry (an image's id or position, an annotation's id or position)."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a COCO annotation file: not JSON ({e})") from None
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)):
        raise ValueError(f"{path} is not a COCO instances file: it needs 'images' and 'annotations' lists")
    ids: dict[int, int] = {}
    names: dict[str, int] = {}
    for k, entry in enumerate(data["images"]):
        if not (isinstance(entry, dict) and "id" in entry and "file_name" in entry):
            raise ValueError(f"{path} is not a COCO instances file: an 'images' entry lacks 'id' or 'file_name'")
        where = f"{path}: images[{k}]"
        if not _is_int(entry["id"]):
            raise ValueError(f"{where} has id {entry['id']!r}; image ids are whole numbers")
        if not _safe_file_name(entry["file_name"]):
            raise ValueError(f"{where} (id {entry['id']}) has file_name {entry['file_name']!r}: file names are "
                             "non-empty paths relative to --data-root, without '..' (an image outside --data-root "
                             "is refused)")
        for key in ("height", "width"):
            if key in entry and not (_is_int(entry[key]) and entry[key] > 0):
                raise ValueError(f"{where} (id {entry['id']}) has {key} {entry[key]!r}; a positive whole number")
        name = str(Path(entry["file_name"].replace("\\", "/")))
        for seen, value, what in ((ids, entry["id"], "id"), (names, name, "file_name")):
            if value in seen:
                raise ValueError(f"{where} repeats the {what} {value!r} of images[{seen[value]}]: each image is "
                                 "listed once (twice, it would count twice and narrow every interval)")
            seen[value] = k
    for k, ann in enumerate(data["annotations"]):
        if not (isinstance(ann, dict) and "image_id" in ann and "segmentation" in ann):
            raise ValueError(f"{path}: an annotation lacks 'image_id' or 'segmentation' (instance annotations needed)")
        where = f"{path}: annotation {ann['id']!r}" if "id" in ann else f"{path}: annotations[{k}]"
        if not _is_int(ann["image_id"]):
            raise ValueError(f"{where} has image_id {ann['image_id']!r}; image ids are whole numbers")
        if "category_id" in ann and not _is_int(ann["category_id"]):
            raise ValueError(f"{where} has category_id {ann['category_id']!r}; category ids are whole numbers")
        problem = _segmentation_problem(ann["segmentation"])
        if problem is not None:
            raise ValueError(f"{where} has {problem}")
    return data


def _category_ids(data: dict[str, Any], category: Sequence[str | int], path: Path) -> set[int]:
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict) and _is_int(c.get("id"))]
    by_name = {str(c.get("name", "")).lower(): int(c["id"]) for c in cats}
    ids = {int(c["id"]) for c in cats}
    out = set()
    for c in category:
        text = str(c).strip()
        if text.lower() in by_name:
            out.add(by_name[text.lower()])
        elif text.lstrip("-").isdigit() and int(text) in ids:
            out.add(int(text))
        else:
            known = ", ".join(sorted(by_name)[:12]) + (" ..." if len(by_name) > 12 else "")
            raise ValueError(f"category {text!r} is not in {path} (categories: {known or 'none listed'})")
    return out


class CocoMasks(MaskedFiles):
    """COCO-format instances: images under ``root`` by each entry's ``file_name``, masks from the annotations.

    Args:
        root: the folder ``file_name`` is relative to (``--data-root``).
        annotations: the instances JSON.
        image_size, mean, std, crop_pct, interpolation: the model's input (:class:`patchfield.preprocess.Preprocess`).
        category: category names or ids whose instances make the mask (all by default).

    Images without an (allowed) instance give ``mask = None``; listed images absent on disk are counted in
    ``skipped["missing"]``.

    Raises:
        FileNotFoundError: the JSON or ``root`` is missing.
        ValueError: the JSON is not COCO instances, an unknown category, or no listed image exists.
        ImportError: RLE segmentations without pycocotools.
    """

    def __init__(self, root: str | Path, annotations: str | Path, image_size: int | Sequence[int] = 224,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 crop_pct: float = DEFAULT_CROP_PCT, category: Sequence[str | int] | None = None,
                 interpolation: str = "bicubic", pipeline: Any = None) -> None:
        root, path = Path(root), Path(annotations)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder (--data-root) {root} is not a folder")
        data = _load_json(path)
        allowed = _category_ids(data, category, path) if category else None
        self._anns: dict[int, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            if allowed is None or int(ann.get("category_id", -1)) in allowed:
                self._anns.setdefault(int(ann["image_id"]), []).append(ann)
        files, self._entries, missing = [], [], 0
        for entry in data["images"]:
            if (root / entry["file_name"]).is_file():
                files.append(str(entry["file_name"]))
                self._entries.append(entry)
            else:
                missing += 1
        if not files:
            raise ValueError(
                f"none of the {len(data['images'])} images listed in {path} is under {root} "
                "(each entry's file_name is resolved against --data-root)"
            )
        if any(isinstance(a["segmentation"], dict) for e in self._entries for a in self._anns.get(int(e["id"]), [])):
            try:
                import pycocotools  # noqa: F401
            except ImportError as e:
                raise ImportError(_NEEDS_PYCOCOTOOLS) from e
        super().__init__(root, files, image_size, mean, std, crop_pct, interpolation, pipeline)
        self.skipped = {"missing": missing}

    def raw_mask(self, index: int, image: Image.Image) -> np.ndarray | None:
        entry = self._entries[index]
        anns = self._anns.get(int(entry["id"]), [])
        if not anns:
            return None
        height, width = image.height, image.width
        listed = (int(entry.get("height", height)), int(entry.get("width", width)))
        if listed != (height, width):
            raise ValueError(
                f"{self.root / entry['file_name']} is {width}x{height} pixels but the annotations say "
                f"{listed[1]}x{listed[0]}; masks must have their image's size"
            )
        mask = np.zeros((height, width), dtype=bool)
        for ann in anns:
            seg = ann["segmentation"]
            if isinstance(seg, dict):
                mask |= rle_mask(seg, height, width)
            elif isinstance(seg, list):
                for polygon in seg:
                    mask |= polygon_mask(polygon, height, width)
            else:
                raise ValueError(f"annotation {ann.get('id')} has a segmentation that is neither polygons nor RLE")
        return mask
