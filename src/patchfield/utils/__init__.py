"""Small helpers shared across patchfield: atomic file writing."""

from .io import atomic_write, write_json_atomic

__all__ = ["atomic_write", "write_json_atomic"]
