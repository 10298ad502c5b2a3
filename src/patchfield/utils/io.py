"""Atomic file output: write to a fresh temporary sibling, then rename, so partial files never look complete.

Temporaries are created with :func:`tempfile.mkstemp` in the target folder (``O_EXCL``, a random name,
never an existing file or link), named ``.<name>.tmp<random><suffix>`` so that
:func:`remove_stale_temporaries` finds those a killed writer left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "remove_stale_temporaries", "write_json_atomic"]

#: Marker of temporary files in their name: ``.<target name>.tmp...``.
TEMP_MARK = ".tmp"


def _file_mode() -> int:
    """The mode an ordinary ``open(..., "w")`` gives a new file (``0o666`` less the umask), read once at import:
    reading the umask means setting it, which is not safe while other threads create files."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a new, empty temporary path beside ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. The temporary is
    created exclusively with a random name, so a link planted in the folder is never written through.

    Raises:
        OSError: the folder cannot be created or written (the message names the path).

    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_write(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('hello', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}", suffix=path.suffix)
    tmp = Path(name)
    try:
        os.close(fd)
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # mkstemp (or a writer that recreates the file) made it 0o600: an ordinary file
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None:  # e.g. a full disk while writing: say which file
            raise OSError(e.errno, f"{e.strerror or e} while writing {path}", str(path)) from e
        raise
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def remove_stale_temporaries(folder: str | Path, name: str = "", recursive: bool = False) -> list[Path]:
    """Delete the temporaries of :func:`atomic_write` left in ``folder`` by killed writers; return them.

    Only call this while holding the folder's lock (:class:`patchfield.utils.lock.FolderLock`), when no
    other writer can be using them. ``name`` limits it to the temporaries of one target file;
    ``recursive`` looks in subfolders too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name or '*'}{TEMP_MARK}*"
    found = folder.rglob(pattern) if recursive else folder.glob(pattern)
    stale = [p for p in found if p.is_file() or p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent))
