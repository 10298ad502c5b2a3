"""An exclusive lock on an output folder, so two processes never write one store or run at once.

The lock is the file ``<folder>/.patchfield.lock``, held with a POSIX record lock (``fcntl.lockf``)
and holding the holder's PID for the message a second writer gets. The kernel releases the lock
when the process ends, even on ``kill -9``; unlike ``flock``, a record lock is not inherited by
forked children (data-loader workers), so a worker that outlives a killed writer for a moment does
not keep its folder locked. A lock file left by a dead process is taken over and reported. Within
one process a folder can be locked once at a time (a registry of held folders).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType

__all__ = ["FolderLock", "FolderLockedError", "LOCK_FILE"]

LOCK_FILE = ".patchfield.lock"

log = logging.getLogger("patchfield.lock")
_HELD: set[Path] = set()  # folders this process holds (record locks do not conflict within a process)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, writers are not serialised
    fcntl = None  # type: ignore[assignment]


class FolderLockedError(RuntimeError):
    """Another live process holds the lock of an output folder."""


def _read_pid(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 64).decode(errors="replace").strip()


class FolderLock:
    """Hold ``<folder>/.patchfield.lock`` exclusively, as a context manager.

    Args:
        folder: the store or run folder (created when missing).
        option: the command-line option that chose it, named in the message (default ``--out``).
        clean: once held, delete the temporaries killed writers left
            (:func:`~patchfield.utils.io.remove_stale_temporaries`): ``"folder"`` in the folder,
            ``"recursive"`` in its subfolders too, ``None`` nowhere.

    Raises:
        FolderLockedError: on entering, when another process holds it: "``<folder>`` is being written by
            process <PID>; wait for it or choose another --out".

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with FolderLock(d):
    ...     (d / LOCK_FILE).read_text().strip() == str(os.getpid())
    True
    >>> (d / LOCK_FILE).exists()
    False
    """

    def __init__(self, folder: str | Path, option: str = "--out", clean: str | None = "folder") -> None:
        self.folder = Path(folder)
        self.clean = clean
        self.path = self.folder / LOCK_FILE
        self.option = option
        self._fd: int | None = None
        self._key: Path | None = None
        self._created = False
        self.stale_pid: str | None = None

    def acquire(self) -> FolderLock:
        if fcntl is None:
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.option} {self.folder} is a file, not a folder: "
                                     f"choose another {self.option}")
        self._created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        key = self.folder.resolve()
        if key in _HELD:
            raise FolderLockedError(f"{self.folder} is being written by process {os.getpid()} (this one); "
                                    f"choose another {self.option}")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                holder = _read_pid(fd) or "unknown"
                os.close(fd)
                raise FolderLockedError(f"{self.folder} is being written by process {holder}; wait for it or "
                                        f"choose another {self.option}") from None
            try:  # the holder before us may have removed the file after we opened it: lock the current one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_pid(fd)
        if previous and previous != str(os.getpid()):
            self.stale_pid = previous
            log.warning("%s: took over the lock left by process %s, which is no longer running", self.folder,
                        previous)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        self._key = key
        _HELD.add(key)
        if self.clean:
            from .io import remove_stale_temporaries

            remove_stale_temporaries(self.folder, recursive=self.clean == "recursive")
        return self

    def release(self) -> None:
        """Give the lock up and delete its file (and the folder, when the lock created it and it stayed empty)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            _HELD.discard(self._key)
        if self._created:  # a run that failed before writing anything leaves no folder behind
            try:
                self.folder.rmdir()
            except OSError:
                pass

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
