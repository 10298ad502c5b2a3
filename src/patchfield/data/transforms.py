"""The preprocessing shared by the file-backed data sets: :mod:`patchfield.preprocess` (re-exported here)."""

from __future__ import annotations

from ..preprocess import DEFAULT_CROP_PCT, Preprocess, as_size

__all__ = ["DEFAULT_CROP_PCT", "Preprocess", "as_size"]
