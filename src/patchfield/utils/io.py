"""Atomic file output: write to a fresh temporary sibling, then rename, so partial files never look complete.

Temporaries are created with :func:`tempfile.mkstemp` in the target folder (``O_EXCL``, a random name,
never an existing file or link), named ``.<name>.tmp<random><suffix>`` so that
:func:`remove_stale_temporaries` finds those a killed writer left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TextIO

__all__ = ["OUTPUTS_FILE", "atomic_write", "one_run_outputs", "remove_stale_temporaries", "write_json_atomic"]

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
        _journal(path)  # before the rename: a file in the folder is always in its run's journal
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


#: The record of an output folder's last run (:func:`one_run_outputs`): ``complete`` and the files it wrote.
OUTPUTS_FILE = "outputs.json"
OUTPUTS_FORMAT = "patchfield-outputs/1"
_JOURNAL = ".outputs.journal"  # the files of the run under way, one relative path a line (appended as written)
_RECORDING: ContextVar[_OutputRun | None] = ContextVar("patchfield_outputs", default=None)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _listed_files(folder: Path) -> list[Path]:
    """The files the folder's last run wrote (its ``outputs.json``, and the journal of a run that was killed),
    as paths inside ``folder`` (anything naming a place outside it is ignored)."""
    names: list[str] = []
    try:
        record = json.loads((folder / OUTPUTS_FILE).read_text())
        if isinstance(record, dict) and isinstance(record.get("files"), list):
            names += [n for n in record["files"] if isinstance(n, str)]
    except (OSError, ValueError):
        pass
    try:
        names += (folder / _JOURNAL).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        pass
    root = folder.resolve()
    out = []
    for name in dict.fromkeys(n for n in names if n.strip()):
        path = folder / name
        if not Path(name).is_absolute() and ".." not in Path(name).parts and path.parent.resolve().is_relative_to(root):
            out.append(path)
    return out


def _clear_previous(folder: Path) -> None:
    """Delete the files of the folder's previous run (and the folders they leave empty), then its record."""
    emptied: set[Path] = set()
    for path in _listed_files(folder):
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
            emptied.update(p for p in path.parents if folder in p.parents)
    for d in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:  # not empty: it holds something else too
            pass
    (folder / _JOURNAL).unlink(missing_ok=True)
    (folder / OUTPUTS_FILE).unlink(missing_ok=True)


class _OutputRun:
    """One run's outputs in a folder: started at its first file (a run refused before writing leaves the folder
    as it was), journalled file by file, recorded as complete at the end."""

    def __init__(self, folder: Path, command: str) -> None:
        self.folder, self.command = folder, command
        self.journal: TextIO | None = None
        self.record: dict[str, Any] = {}

    def note(self, path: Path) -> None:
        try:
            rel = Path(os.path.abspath(path)).relative_to(self.folder)
        except ValueError:  # written elsewhere (a store, a cache): not this folder's output
            return
        if rel.as_posix() == OUTPUTS_FILE:
            return
        if self.journal is None:
            _clear_previous(self.folder)
            self.record = {"format": OUTPUTS_FORMAT, "command": self.command, "complete": False, "started": _now()}
            # written in place: torn by a crash it is unreadable, which says "not complete" as well
            (self.folder / OUTPUTS_FILE).write_text(json.dumps(self.record, indent=1))
            self.journal = open(self.folder / _JOURNAL, "a", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        self.journal.write(rel.as_posix() + "\n")
        self.journal.flush()

    def finish(self, ok: bool) -> None:
        if self.journal is None:
            return
        self.journal.close()
        if not ok:  # outputs.json keeps saying "complete": false; the next run deletes what the journal lists
            return
        names = dict.fromkeys((self.folder / _JOURNAL).read_text(encoding="utf-8").splitlines())
        files = sorted(n for n in names if (self.folder / n).is_file())
        write_json_atomic(self.folder / OUTPUTS_FILE, {**self.record, "complete": True, "finished": _now(),
                                                       "files": files})
        (self.folder / _JOURNAL).unlink(missing_ok=True)


def _journal(path: Path) -> None:
    """Note ``path`` in the journal of the :func:`one_run_outputs` block it is written under, if any."""
    run = _RECORDING.get()
    if run is not None:
        run.note(path)


@contextmanager
def one_run_outputs(folder: str | Path, command: str) -> Iterator[None]:
    """Make ``folder``'s outputs wholly from this run, or say they are not.

    Call it holding the folder's lock (:class:`patchfield.utils.lock.FolderLock`). At the first file the run
    writes there, the files of the previous run are deleted (those its ``outputs.json`` lists, or the journal of
    a run that was killed lists) and ``outputs.json`` says ``"complete": false``; every file :func:`atomic_write`
    puts under ``folder`` goes into a journal; when the block ends without error, ``outputs.json`` is written
    last: ``{"format", "command", "complete": true, "started", "finished", "files"}`` (paths relative to
    ``folder``). A folder whose ``outputs.json`` is missing or says ``"complete": false`` holds no complete
    result. Files in the folder that no patchfield run wrote are left alone; a run refused before writing
    anything leaves the folder as it was.
    """
    run = _OutputRun(Path(os.path.abspath(folder)), command)
    token = _RECORDING.set(run)
    ok = False
    try:
        yield
        ok = True
    finally:
        _RECORDING.reset(token)
        run.finish(ok)
