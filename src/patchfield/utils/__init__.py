"""Small helpers shared across patchfield: atomic file writing, output-folder locks."""

from .io import atomic_write, remove_stale_temporaries, write_json_atomic
from .lock import FolderLock, FolderLockedError

__all__ = ["FolderLock", "FolderLockedError", "atomic_write", "remove_stale_temporaries", "write_json_atomic"]
